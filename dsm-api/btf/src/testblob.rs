//! Test-only writer of small BTF blobs, following the same layout rules the parser checks.

use crate::format::Kind;
use std::vec::Vec;

pub struct Builder {
    types: Vec<u8>,
    strings: Vec<u8>,
    next_id: u32,
}

impl Builder {
    pub fn new() -> Builder {
        Builder {
            types: Vec::new(),
            strings: std::vec![0],
            next_id: 1,
        }
    }

    pub fn name(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        off
    }

    /// Appends one record: the fixed words, then `extra` words.
    pub fn raw(
        &mut self,
        name: &str,
        kind: Kind,
        kind_flag: bool,
        vlen: u32,
        size_or_type: u32,
        extra: &[u32],
    ) -> u32 {
        let name_off = self.name(name);
        let info = ((kind_flag as u32) << 31) | ((kind as u32) << 24) | vlen;
        for w in [name_off, info, size_or_type].iter().chain(extra) {
            self.types.extend_from_slice(&w.to_le_bytes());
        }
        self.next_id += 1;
        self.next_id - 1
    }

    pub fn int(&mut self, name: &str, size: u32, encoding: u32) -> u32 {
        self.raw(
            name,
            Kind::Int,
            false,
            0,
            size,
            &[(encoding << 24) | (size * 8)],
        )
    }

    pub fn refer(&mut self, name: &str, kind: Kind, target: u32) -> u32 {
        self.raw(name, kind, false, 0, target, &[])
    }

    pub fn array(&mut self, elem: u32, index: u32, n: u32) -> u32 {
        self.raw("", Kind::Array, false, 0, 0, &[elem, index, n])
    }

    /// A struct or union; members are (name, type, bit offset, bitfield width).
    pub fn composite(
        &mut self,
        kind: Kind,
        name: &str,
        size: u32,
        members: &[(&str, u32, u32, u32)],
    ) -> u32 {
        let bitfields = members.iter().any(|m| m.3 != 0);
        let mut extra = Vec::new();
        for &(n, ty, off, width) in members {
            extra.push(self.name(n));
            extra.push(ty);
            extra.push(if bitfields { (width << 24) | off } else { off });
        }
        let vlen = members.len() as u32;
        self.raw(name, kind, bitfields, vlen, size, &extra)
    }

    pub fn strukt(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
        let m: Vec<_> = members.iter().map(|&(n, t, o)| (n, t, o, 0)).collect();
        self.composite(Kind::Struct, name, size, &m)
    }

    pub fn enumeration(&mut self, name: &str, signed: bool, values: &[(&str, i32)]) -> u32 {
        let mut extra = Vec::new();
        for &(n, v) in values {
            extra.push(self.name(n));
            extra.push(v as u32);
        }
        self.raw(name, Kind::Enum, signed, values.len() as u32, 4, &extra)
    }

    pub fn enum64(&mut self, name: &str, signed: bool, values: &[(&str, u64)]) -> u32 {
        let mut extra = Vec::new();
        for &(n, v) in values {
            extra.push(self.name(n));
            extra.push(v as u32);
            extra.push((v >> 32) as u32);
        }
        self.raw(name, Kind::Enum64, signed, values.len() as u32, 8, &extra)
    }

    /// Header (24 bytes, types first) and both sections.
    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&0xeb9fu16.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        let tl = self.types.len() as u32;
        for w in [24, 0, tl, tl, self.strings.len() as u32] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.strings);
        out
    }
}

/// A blob with every kind, shaped like a tiny kernel: `list_head`, a `task` with an anonymous
/// union, a bitfield, a `comm` array and typedef'd ids.
pub fn kitchen_sink() -> Vec<u8> {
    let mut b = Builder::new();
    let int = b.int("int", 4, 1); // 1
    let uint = b.int("unsigned int", 4, 0); // 2
    let ch = b.int("char", 1, 2); // 3
    let list = b.raw("list_head", Kind::Fwd, false, 0, 0, &[]); // 4: declared before defined
    let plist = b.refer("", Kind::Ptr, list); // 5
    let list_def = b.strukt("list_head", 16, &[("next", plist, 0), ("prev", plist, 64)]); // 6
    let uid_t = b.refer("uid_t", Kind::Typedef, uint); // 7
    let kuid = b.strukt("", 4, &[("val", uid_t, 0)]); // 8
    let kuid_t = b.refer("kuid_t", Kind::Typedef, kuid); // 9
    let ckuid = b.refer("", Kind::Const, kuid_t); // 10
    let comm = b.array(ch, int, 16); // 11
    let anon = b.composite(
        Kind::Union,
        "",
        16,
        &[("node", list_def, 0, 0), ("rcu", plist, 0, 0)],
    ); // 12
    let flags = b.composite(
        Kind::Struct,
        "flags",
        4,
        &[("a", uint, 0, 3), ("b", uint, 3, 5), ("c", uint, 8, 0)],
    ); // 13
    let vol = b.refer("", Kind::Volatile, int); // 14
    let state = b.enumeration("state", false, &[("ST_LIVE", 0), ("ST_GONE", 2)]); // 15
    let task = b.strukt(
        "task",
        64,
        &[
            ("tasks", list_def, 0),
            ("", anon, 128),
            ("uid", ckuid, 256),
            ("euid", kuid_t, 288),
            ("comm", comm, 320),
            ("f", flags, 448),
            ("st", state, 480),
        ],
    ); // 16
    let big = b.enum64(
        "big",
        true,
        &[("BIG_NEG", (-5i64) as u64), ("BIG", 1 << 40)],
    ); // 17
    let t = b.name("t");
    let proto = b.raw("", Kind::FuncProto, false, 2, int, &[t, task, 0, 0]); // 18
    let func = b.raw("do_task", Kind::Func, false, 1, proto, &[]); // 19
    let var = b.raw("init_task", Kind::Var, false, 0, task, &[1]); // 20
    b.raw(".data", Kind::Datasec, false, 1, 64, &[var, 0, 64]); // 21
    b.raw("double", Kind::Float, false, 0, 8, &[]); // 22
    b.raw("tag", Kind::DeclTag, false, 0, func, &[u32::MAX]); // 23
    let tt = b.refer("user", Kind::TypeTag, int); // 24
    b.refer("", Kind::Restrict, tt); // 25
    b.refer("", Kind::Ptr, vol); // 26
    b.refer("big_t", Kind::Typedef, big); // 27
    b.build()
}
