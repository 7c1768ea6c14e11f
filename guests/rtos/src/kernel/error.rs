//! μITRON 4.0 error codes.

/// A kernel error, with the μITRON 4.0 main error code as its value.
///
/// Services return `Err(ErrorCode)`; [`ErrorCode::Ok`] exists only so that
/// raw return codes (what a task sees in its return register) can be
/// expressed with one type.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `E_OK`: success.
    Ok = 0,
    /// `E_SYS`: internal kernel error.
    System = -5,
    /// `E_NOSPT`: feature not supported.
    NotSupported = -9,
    /// `E_RSFN`: reserved function code.
    ReservedFunction = -10,
    /// `E_RSATR`: reserved attribute.
    ReservedAttribute = -11,
    /// `E_PAR`: bad parameter (priority, pattern, period...).
    Parameter = -17,
    /// `E_ID`: bad object id.
    Id = -18,
    /// `E_CTX`: service not allowed in this context.
    Context = -25,
    /// `E_MACV`: memory access violation.
    MemoryAccess = -26,
    /// `E_OACV`: object access violation.
    ObjectAccess = -27,
    /// `E_ILUSE`: illegal use of a service.
    IllegalUse = -28,
    /// `E_NOMEM`: out of memory (static capacity exceeded).
    NoMemory = -33,
    /// `E_NOID`: no free id or table slot.
    NoId = -34,
    /// `E_OBJ`: object in the wrong state.
    ObjectState = -41,
    /// `E_NOEXS`: object does not exist.
    NonExistent = -42,
    /// `E_QOVR`: a count or queue would overflow.
    QueueOverflow = -43,
    /// `E_RLWAI`: wait forcibly released.
    ReleasedWait = -49,
    /// `E_TMOUT`: polling failed or the wait timed out.
    Timeout = -50,
    /// `E_DLT`: the waited-for object was deleted.
    Deleted = -51,
    /// `E_CLS`: the waited-for object changed state.
    StateChanged = -52,
    /// `E_WBLK`: non-blocking call accepted.
    NonBlocking = -57,
    /// `E_BOVR`: buffer overflow.
    BufferOverflow = -58,
}

pub const E_OK: ErrorCode = ErrorCode::Ok;
pub const E_SYS: ErrorCode = ErrorCode::System;
pub const E_NOSPT: ErrorCode = ErrorCode::NotSupported;
pub const E_RSFN: ErrorCode = ErrorCode::ReservedFunction;
pub const E_RSATR: ErrorCode = ErrorCode::ReservedAttribute;
pub const E_PAR: ErrorCode = ErrorCode::Parameter;
pub const E_ID: ErrorCode = ErrorCode::Id;
pub const E_CTX: ErrorCode = ErrorCode::Context;
pub const E_MACV: ErrorCode = ErrorCode::MemoryAccess;
pub const E_OACV: ErrorCode = ErrorCode::ObjectAccess;
pub const E_ILUSE: ErrorCode = ErrorCode::IllegalUse;
pub const E_NOMEM: ErrorCode = ErrorCode::NoMemory;
pub const E_NOID: ErrorCode = ErrorCode::NoId;
pub const E_OBJ: ErrorCode = ErrorCode::ObjectState;
pub const E_NOEXS: ErrorCode = ErrorCode::NonExistent;
pub const E_QOVR: ErrorCode = ErrorCode::QueueOverflow;
pub const E_RLWAI: ErrorCode = ErrorCode::ReleasedWait;
pub const E_TMOUT: ErrorCode = ErrorCode::Timeout;
pub const E_DLT: ErrorCode = ErrorCode::Deleted;
pub const E_CLS: ErrorCode = ErrorCode::StateChanged;
pub const E_WBLK: ErrorCode = ErrorCode::NonBlocking;
pub const E_BOVR: ErrorCode = ErrorCode::BufferOverflow;

impl ErrorCode {
    /// Every code, for lookups from raw values.
    pub const ALL: [ErrorCode; 22] = [
        E_OK, E_SYS, E_NOSPT, E_RSFN, E_RSATR, E_PAR, E_ID, E_CTX, E_MACV, E_OACV, E_ILUSE,
        E_NOMEM, E_NOID, E_OBJ, E_NOEXS, E_QOVR, E_RLWAI, E_TMOUT, E_DLT, E_CLS, E_WBLK, E_BOVR,
    ];

    /// The raw μITRON value.
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// The code with this raw value, if it is one.
    pub fn from_code(code: i32) -> Option<Self> {
        Self::ALL.iter().copied().find(|e| e.code() == code)
    }
}
