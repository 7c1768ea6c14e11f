//! The BTF wire format: header, type records and string section, validated up front so that
//! every later access stays inside the blob. Written from the kernel's
//! `Documentation/bpf/btf.rst`.

use crate::Error;

/// `btf_header.magic`, read little-endian.
pub const MAGIC: u16 = 0xeb9f;
/// The only format version there is.
pub const VERSION: u8 = 1;
/// Size of the version-1 header; a longer header's extra bytes must be zero.
pub const HEADER_LEN: usize = 24;
/// Largest type id the kernel accepts (`BTF_MAX_TYPE`).
pub const MAX_TYPES: u32 = 0x000f_ffff;
/// Largest string offset the kernel accepts (`BTF_MAX_NAME_OFFSET`).
pub const MAX_NAME_OFFSET: u32 = 0x00ff_ffff;
/// Size of the fixed part of every type record (`struct btf_type`).
const RECORD_LEN: usize = 12;
/// A header longer than this is not believable (the kernel caps it at a page).
const MAX_HEADER_LEN: u32 = 4096;

pub(crate) fn u32_at(bytes: &[u8], off: usize) -> Option<u32> {
    let b = bytes.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The header fields; section offsets are relative to the end of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub hdr_len: u32,
    pub type_off: u32,
    pub type_len: u32,
    pub str_off: u32,
    pub str_len: u32,
}

impl Header {
    /// Reads and checks the header at the start of `bytes` (which may run on past the blob).
    pub fn parse(bytes: &[u8]) -> Result<Header, Error> {
        if bytes.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let magic = u16::from_le_bytes([bytes[0], bytes[1]]);
        if magic != MAGIC {
            return Err(if magic.swap_bytes() == MAGIC {
                Error::BigEndian
            } else {
                Error::BadMagic
            });
        }
        if bytes[2] != VERSION {
            return Err(Error::UnsupportedVersion(bytes[2]));
        }
        if bytes[3] != 0 {
            return Err(Error::BadHeader("flags are not zero"));
        }
        let field = |i: usize| u32_at(bytes, 4 + 4 * i).ok_or(Error::Truncated);
        let h = Header {
            hdr_len: field(0)?,
            type_off: field(1)?,
            type_len: field(2)?,
            str_off: field(3)?,
            str_len: field(4)?,
        };
        if (h.hdr_len as usize) < HEADER_LEN || h.hdr_len > MAX_HEADER_LEN {
            return Err(Error::BadHeader("header length out of range"));
        }
        let extra = bytes
            .get(HEADER_LEN..h.hdr_len as usize)
            .ok_or(Error::Truncated)?;
        if extra.iter().any(|&b| b != 0) {
            return Err(Error::BadHeader("unknown header fields are set"));
        }
        if !h.type_off.is_multiple_of(4) || !h.type_len.is_multiple_of(4) {
            return Err(Error::BadHeader("type section is not 4-byte aligned"));
        }
        if h.str_len == 0 || h.str_len > MAX_NAME_OFFSET + 1 {
            return Err(Error::BadHeader("string section size out of range"));
        }
        // The two sections tile the space after the header: no gap, no overlap.
        let t = (h.type_off as u64, h.type_len as u64);
        let s = (h.str_off as u64, h.str_len as u64);
        let (first, second) = if t.0 <= s.0 { (t, s) } else { (s, t) };
        if first.0 != 0 || first.0 + first.1 != second.0 {
            return Err(Error::BadHeader("sections do not tile the blob"));
        }
        Ok(h)
    }

    /// Size of the whole blob: header plus both sections.
    pub fn total_len(&self) -> usize {
        // Bounded by the checks in `parse`: at most 4096 + 2 * 4 GiB, fits a 64-bit usize.
        let end = (self.type_off as u64 + self.type_len as u64)
            .max(self.str_off as u64 + self.str_len as u64);
        usize::try_from(self.hdr_len as u64 + end).unwrap_or(usize::MAX)
    }
}

/// The type kinds (`BTF_KIND_*`); id 0 is `void` and has no record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int = 1,
    Ptr = 2,
    Array = 3,
    Struct = 4,
    Union = 5,
    Enum = 6,
    Fwd = 7,
    Typedef = 8,
    Volatile = 9,
    Const = 10,
    Restrict = 11,
    Func = 12,
    FuncProto = 13,
    Var = 14,
    Datasec = 15,
    Float = 16,
    DeclTag = 17,
    TypeTag = 18,
    Enum64 = 19,
}

impl Kind {
    pub fn from_raw(raw: u32) -> Option<Kind> {
        use Kind::*;
        Some(match raw {
            1 => Int,
            2 => Ptr,
            3 => Array,
            4 => Struct,
            5 => Union,
            6 => Enum,
            7 => Fwd,
            8 => Typedef,
            9 => Volatile,
            10 => Const,
            11 => Restrict,
            12 => Func,
            13 => FuncProto,
            14 => Var,
            15 => Datasec,
            16 => Float,
            17 => DeclTag,
            18 => TypeTag,
            19 => Enum64,
            _ => return None,
        })
    }

    /// Bytes of kind-specific data after the fixed record, for `vlen` entries.
    fn extra_len(self, vlen: usize) -> usize {
        use Kind::*;
        match self {
            Int | Var | DeclTag => 4,
            Array => 12,
            Struct | Union | Enum64 | Datasec => 12 * vlen,
            Enum | FuncProto => 8 * vlen,
            Ptr | Fwd | Typedef | Volatile | Const | Restrict | Func | Float | TypeTag => 0,
        }
    }

    /// Kinds whose third word is a size in bytes (the others hold a type id).
    pub fn has_size(self) -> bool {
        use Kind::*;
        matches!(self, Int | Struct | Union | Enum | Enum64 | Datasec | Float)
    }

    /// Kinds that only qualify or rename another type.
    pub fn is_modifier(self) -> bool {
        use Kind::*;
        matches!(self, Typedef | Volatile | Const | Restrict | TypeTag)
    }
}

/// `BTF_INT_*` encoding bits.
pub const INT_SIGNED: u8 = 1;
pub const INT_CHAR: u8 = 2;
pub const INT_BOOL: u8 = 4;

/// The word after an `INT` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntInfo {
    pub encoding: u8,
    pub bit_offset: u8,
    pub bits: u8,
}

/// The data after an `ARRAY` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrayInfo {
    pub elem: u32,
    pub index: u32,
    pub nelems: u32,
}

/// One member of a `STRUCT` or `UNION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub name_off: u32,
    pub type_id: u32,
    /// Offset from the start of the containing struct, in bits.
    pub bit_offset: u32,
    /// Width of a bitfield, 0 for an ordinary member.
    pub bitfield_size: u8,
}

/// One enumerator of an `ENUM` or `ENUM64` (signedness from the kind flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enumerator {
    pub name_off: u32,
    pub value: i128,
}

/// A `FUNC_PROTO` parameter (`name_off` 0 and `type_id` 0 marks varargs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    pub name_off: u32,
    pub type_id: u32,
}

/// One variable of a `DATASEC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecInfo {
    pub type_id: u32,
    pub offset: u32,
    pub size: u32,
}

/// One type record, borrowed from the blob.
#[derive(Debug, Clone, Copy)]
pub struct Type<'a> {
    id: u32,
    name_off: u32,
    info: u32,
    size_or_type: u32,
    kind: Kind,
    extra: &'a [u8],
}

impl<'a> Type<'a> {
    /// Decodes the record at `off` of the type section; returns it and the next record's offset.
    fn decode(types: &'a [u8], off: usize, id: u32) -> Result<(Type<'a>, usize), Error> {
        let bad = |why| Error::BadType { id, why };
        let word = |i: usize| u32_at(types, off + 4 * i).ok_or(bad("record is truncated"));
        let (name_off, info, size_or_type) = (word(0)?, word(1)?, word(2)?);
        let kind = Kind::from_raw((info >> 24) & 0x1f).ok_or(bad("unknown kind"))?;
        let start = off + RECORD_LEN;
        let end = start + kind.extra_len((info & 0xffff) as usize);
        let extra = types
            .get(start..end)
            .ok_or(bad("record runs past the type section"))?;
        let t = Type {
            id,
            name_off,
            info,
            size_or_type,
            kind,
            extra,
        };
        Ok((t, end))
    }

    pub fn id(&self) -> u32 {
        self.id
    }
    pub fn kind(&self) -> Kind {
        self.kind
    }
    pub fn name_off(&self) -> u32 {
        self.name_off
    }
    /// Entry count (members, enumerators, parameters, variables); linkage for `FUNC`.
    pub fn vlen(&self) -> u32 {
        self.info & 0xffff
    }
    pub fn kind_flag(&self) -> bool {
        self.info >> 31 != 0
    }
    /// Size in bytes, for the kinds that carry one.
    pub fn size(&self) -> Option<u32> {
        self.kind.has_size().then_some(self.size_or_type)
    }
    /// The type this one refers to (pointee, typedef target, function prototype, ...).
    pub fn referenced(&self) -> Option<u32> {
        (!self.kind.has_size() && self.kind != Kind::Array && self.kind != Kind::Fwd)
            .then_some(self.size_or_type)
    }

    fn word(&self, i: usize) -> u32 {
        // `extra` was sized from the kind and vlen at decode time.
        u32_at(self.extra, 4 * i).unwrap_or(0)
    }

    pub fn int(&self) -> Option<IntInfo> {
        (self.kind == Kind::Int).then(|| {
            let w = self.word(0);
            IntInfo {
                encoding: ((w >> 24) & 0x0f) as u8,
                bit_offset: (w >> 16) as u8,
                bits: w as u8,
            }
        })
    }

    pub fn array(&self) -> Option<ArrayInfo> {
        (self.kind == Kind::Array).then(|| ArrayInfo {
            elem: self.word(0),
            index: self.word(1),
            nelems: self.word(2),
        })
    }

    /// Members of a struct or union; empty for other kinds.
    pub fn members(&self) -> impl Iterator<Item = Member> + 'a {
        let composite = matches!(self.kind, Kind::Struct | Kind::Union);
        let bitfields = self.kind_flag();
        let bytes: &'a [u8] = if composite { self.extra } else { &[] };
        bytes.chunks_exact(12).map(move |c| {
            let off = u32_at(c, 8).unwrap_or(0);
            let (bit_offset, bitfield_size) = if bitfields {
                (off & 0x00ff_ffff, (off >> 24) as u8)
            } else {
                (off, 0)
            };
            Member {
                name_off: u32_at(c, 0).unwrap_or(0),
                type_id: u32_at(c, 4).unwrap_or(0),
                bit_offset,
                bitfield_size,
            }
        })
    }

    /// Enumerators of an `ENUM` or `ENUM64`; empty for other kinds.
    pub fn enumerators(&self) -> impl Iterator<Item = Enumerator> + 'a {
        let signed = self.kind_flag();
        let (bytes, stride, wide): (&'a [u8], usize, bool) = match self.kind {
            Kind::Enum => (self.extra, 8, false),
            Kind::Enum64 => (self.extra, 12, true),
            _ => (&[], 8, false),
        };
        bytes.chunks_exact(stride).map(move |c| {
            let lo = u32_at(c, 4).unwrap_or(0);
            let value = match (wide, signed) {
                (false, true) => lo as i32 as i128,
                (false, false) => lo as i128,
                (true, _) => {
                    let raw = ((u32_at(c, 8).unwrap_or(0) as u64) << 32) | lo as u64;
                    if signed {
                        raw as i64 as i128
                    } else {
                        raw as i128
                    }
                }
            };
            Enumerator {
                name_off: u32_at(c, 0).unwrap_or(0),
                value,
            }
        })
    }

    /// Parameters of a `FUNC_PROTO`; empty for other kinds.
    pub fn params(&self) -> impl Iterator<Item = Param> + 'a {
        let bytes: &'a [u8] = if self.kind == Kind::FuncProto {
            self.extra
        } else {
            &[]
        };
        bytes.chunks_exact(8).map(|c| Param {
            name_off: u32_at(c, 0).unwrap_or(0),
            type_id: u32_at(c, 4).unwrap_or(0),
        })
    }

    /// Variables of a `DATASEC`; empty for other kinds.
    pub fn sec_infos(&self) -> impl Iterator<Item = SecInfo> + 'a {
        let bytes: &'a [u8] = if self.kind == Kind::Datasec {
            self.extra
        } else {
            &[]
        };
        bytes.chunks_exact(12).map(|c| SecInfo {
            type_id: u32_at(c, 0).unwrap_or(0),
            offset: u32_at(c, 4).unwrap_or(0),
            size: u32_at(c, 8).unwrap_or(0),
        })
    }

    /// Linkage of a `VAR` (0 static, 1 global).
    pub fn var_linkage(&self) -> Option<u32> {
        (self.kind == Kind::Var).then(|| self.word(0))
    }

    /// Which member or parameter a `DECL_TAG` applies to (-1: the type itself).
    pub fn decl_tag_component(&self) -> Option<i32> {
        (self.kind == Kind::DeclTag).then(|| self.word(0) as i32)
    }

    /// Every type id this record refers to, for validation.
    fn for_each_ref(&self, mut f: impl FnMut(u32) -> Result<(), Error>) -> Result<(), Error> {
        if let Some(r) = self.referenced() {
            f(r)?;
        }
        if let Some(a) = self.array() {
            f(a.elem)?;
            f(a.index)?;
        }
        for m in self.members() {
            f(m.type_id)?;
        }
        for p in self.params() {
            f(p.type_id)?;
        }
        for v in self.sec_infos() {
            f(v.type_id)?;
        }
        Ok(())
    }

    /// Checks the rules of `btf.rst` that keep later queries meaningful; `strings_len`
    /// bounds every name offset.
    fn check(&self, strings_len: usize) -> Result<(), Error> {
        use Kind::*;
        let bad = |why| Err(Error::BadType { id: self.id, why });
        if self.info & 0x60ff_0000 != 0 {
            return bad("unused info bits are set");
        }
        let name_ok = |off: u32| (off as usize) < strings_len;
        if !name_ok(self.name_off) {
            return bad("name offset outside the string section");
        }
        let kind_flag_ok = matches!(
            self.kind,
            Struct | Union | Enum | Enum64 | Fwd | DeclTag | TypeTag
        );
        if self.kind_flag() && !kind_flag_ok {
            return bad("kind_flag set on a kind that has none");
        }
        let has_vlen = matches!(
            self.kind,
            Struct | Union | Enum | Enum64 | FuncProto | Datasec | Func
        );
        if self.vlen() != 0 && !has_vlen {
            return bad("vlen set on a kind that has none");
        }
        match self.kind {
            Int => {
                let i = self.int().unwrap_or(IntInfo {
                    encoding: 0,
                    bit_offset: 0,
                    bits: 0,
                });
                let size = self.size_or_type;
                if !matches!(size, 1 | 2 | 4 | 8 | 16) {
                    return bad("int size is not 1, 2, 4, 8 or 16");
                }
                if self.word(0) & 0xf000_ff00 != 0
                    || i.encoding & !(INT_SIGNED | INT_CHAR | INT_BOOL) != 0
                {
                    return bad("unknown int encoding bits");
                }
                if i.bits == 0 || i.bits as u32 + i.bit_offset as u32 > size * 8 {
                    return bad("int bits do not fit its size");
                }
            }
            Struct | Union => {
                let size_bits = self.size_or_type as u64 * 8;
                for m in self.members() {
                    if !name_ok(m.name_off) {
                        return bad("member name outside the string section");
                    }
                    if m.bit_offset as u64 + m.bitfield_size as u64 > size_bits {
                        return bad("member offset beyond the struct size");
                    }
                }
            }
            Enum | Enum64 => {
                if !matches!(self.size_or_type, 1 | 2 | 4 | 8) {
                    return bad("enum size is not 1, 2, 4 or 8");
                }
                if self.enumerators().any(|e| !name_ok(e.name_off)) {
                    return bad("enumerator name outside the string section");
                }
            }
            FuncProto if self.params().any(|p| !name_ok(p.name_off)) => {
                return bad("parameter name outside the string section");
            }
            Datasec
                if self
                    .sec_infos()
                    .any(|v| v.offset as u64 + v.size as u64 > self.size_or_type as u64) =>
            {
                return bad("variable beyond the end of its section");
            }
            DeclTag if (self.word(0) as i32) < -1 => return bad("component index below -1"),
            Func if self.vlen() > 2 => return bad("unknown function linkage"),
            Var if self.word(0) > 2 => return bad("unknown variable linkage"),
            Float if !matches!(self.size_or_type, 2 | 4 | 8 | 12 | 16) => {
                return bad("float size is not 2, 4, 8, 12 or 16");
            }
            Fwd | Typedef | Func | Var | DeclTag | TypeTag if self.name_off == 0 => {
                return bad("a named kind has no name");
            }
            _ => {}
        }
        Ok(())
    }
}

/// A validated BTF blob.
#[derive(Debug, Clone, Copy)]
pub struct Btf<'a> {
    header: Header,
    types: &'a [u8],
    strings: &'a [u8],
    count: u32,
    /// Optional caller-provided table of record offsets, indexed by `id - 1`.
    index: Option<&'a [u32]>,
}

impl<'a> Btf<'a> {
    /// Validates `blob`, which must be exactly one BTF blob (header and both sections).
    ///
    /// Every record is decoded and checked, and every type id a record refers to must exist, so
    /// a blob that parses cannot send a later query out of bounds.
    pub fn parse(blob: &'a [u8]) -> Result<Btf<'a>, Error> {
        let header = Header::parse(blob)?;
        if header.total_len() > blob.len() {
            return Err(Error::Truncated);
        }
        if header.total_len() < blob.len() {
            return Err(Error::BadHeader("bytes after the string section"));
        }
        let section = |off: u32, len: u32| {
            let start = header.hdr_len as usize + off as usize;
            &blob[start..start + len as usize]
        };
        let types = section(header.type_off, header.type_len);
        let strings = section(header.str_off, header.str_len);
        if strings[0] != 0 || strings[strings.len() - 1] != 0 {
            return Err(Error::BadHeader(
                "string section does not start and end with NUL",
            ));
        }
        let mut btf = Btf {
            header,
            types,
            strings,
            count: 0,
            index: None,
        };
        let mut off = 0;
        while off < types.len() {
            if btf.count >= MAX_TYPES {
                return Err(Error::BadHeader("too many types"));
            }
            let (t, next) = Type::decode(types, off, btf.count + 1)?;
            t.check(strings.len())?;
            btf.count += 1;
            off = next;
        }
        let count = btf.count;
        for t in btf.types() {
            t.for_each_ref(|r| {
                if r > count {
                    Err(Error::BadType {
                        id: t.id,
                        why: "refers to a type id that does not exist",
                    })
                } else {
                    Ok(())
                }
            })?;
        }
        Ok(btf)
    }

    /// Fills `index` with every record's offset so `type_by_id` no longer scans. `index` needs
    /// at least [`Btf::count`] entries.
    pub fn with_index(self, index: &'a mut [u32]) -> Result<Btf<'a>, Error> {
        let slots = index
            .get_mut(..self.count as usize)
            .ok_or(Error::IndexTooSmall)?;
        let mut off = 0u32;
        for (slot, t) in slots.iter_mut().zip(self.types()) {
            *slot = off;
            off += (RECORD_LEN + t.extra.len()) as u32;
        }
        Ok(Btf {
            index: Some(index),
            ..self
        })
    }

    pub fn header(&self) -> Header {
        self.header
    }

    /// Number of type records (ids run from 1 to this; 0 is `void`).
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Every record in id order.
    pub fn types(&self) -> Types<'a> {
        Types {
            types: self.types,
            off: 0,
            next_id: 1,
        }
    }

    /// The record of type `id` (0, `void`, has none).
    pub fn type_by_id(&self, id: u32) -> Result<Type<'a>, Error> {
        if id == 0 || id > self.count {
            return Err(Error::NoSuchType(id));
        }
        match self.index {
            Some(index) => {
                let off = *index.get(id as usize - 1).ok_or(Error::NoSuchType(id))?;
                Ok(Type::decode(self.types, off as usize, id)?.0)
            }
            None => self
                .types()
                .nth(id as usize - 1)
                .ok_or(Error::NoSuchType(id)),
        }
    }

    /// The NUL-terminated bytes at `off` of the string section, without the NUL.
    pub fn name_bytes(&self, off: u32) -> Result<&'a [u8], Error> {
        let rest = self
            .strings
            .get(off as usize..)
            .ok_or(Error::BadString(off))?;
        // The section ends with NUL (checked in `parse`), so one is always found.
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(Error::BadString(off))?;
        Ok(&rest[..len])
    }

    /// The string at `off`, as UTF-8.
    pub fn name(&self, off: u32) -> Result<&'a str, Error> {
        core::str::from_utf8(self.name_bytes(off)?).map_err(|_| Error::BadString(off))
    }
}

/// Iterator over the records of a validated blob.
#[derive(Debug, Clone)]
pub struct Types<'a> {
    types: &'a [u8],
    off: usize,
    next_id: u32,
}

impl<'a> Iterator for Types<'a> {
    type Item = Type<'a>;

    fn next(&mut self) -> Option<Type<'a>> {
        if self.off >= self.types.len() {
            return None;
        }
        let (t, next) = Type::decode(self.types, self.off, self.next_id).ok()?;
        self.off = next;
        self.next_id += 1;
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testblob::{kitchen_sink, Builder};
    use std::vec::Vec;

    fn set_u32(blob: &mut [u8], off: usize, v: u32) {
        blob[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn every_kind_decodes() {
        let blob = kitchen_sink();
        let btf = Btf::parse(&blob).unwrap();
        assert_eq!(btf.count(), 27);
        let kinds: Vec<Kind> = btf.types().map(|t| t.kind()).collect();
        for k in 1..=19 {
            let k = Kind::from_raw(k).unwrap();
            assert!(kinds.contains(&k), "{k:?} missing from the sample");
        }
        let ids: Vec<u32> = btf.types().map(|t| t.id()).collect();
        assert_eq!(ids, (1..=27).collect::<Vec<_>>());

        let int = btf.type_by_id(1).unwrap();
        assert_eq!(btf.name(int.name_off()), Ok("int"));
        let i = int.int().unwrap();
        assert_eq!((i.encoding, i.bits, i.bit_offset), (INT_SIGNED, 32, 0));
        assert_eq!(int.size(), Some(4));
        assert_eq!(btf.type_by_id(3).unwrap().int().unwrap().encoding, INT_CHAR);

        let fwd = btf.type_by_id(4).unwrap();
        assert_eq!((fwd.kind(), fwd.kind_flag()), (Kind::Fwd, false));
        assert_eq!(btf.type_by_id(5).unwrap().referenced(), Some(4));

        let arr = btf.type_by_id(11).unwrap().array().unwrap();
        assert_eq!((arr.elem, arr.index, arr.nelems), (3, 1, 16));

        let flags = btf.type_by_id(13).unwrap();
        assert!(flags.kind_flag());
        let m: Vec<_> = flags
            .members()
            .map(|m| (m.bit_offset, m.bitfield_size))
            .collect();
        assert_eq!(m, [(0, 3), (3, 5), (8, 0)]);

        let e: Vec<_> = btf.type_by_id(15).unwrap().enumerators().collect();
        assert_eq!(e.iter().map(|e| e.value).collect::<Vec<_>>(), [0, 2]);
        assert_eq!(btf.name(e[1].name_off), Ok("ST_GONE"));
        let e64: Vec<_> = btf.type_by_id(17).unwrap().enumerators().collect();
        assert_eq!(e64[0].value, -5);
        assert_eq!(e64[1].value, 1 << 40);

        let proto = btf.type_by_id(18).unwrap();
        let params: Vec<_> = proto.params().collect();
        assert_eq!(params.len(), 2);
        assert_eq!(btf.name(params[0].name_off), Ok("t"));
        assert_eq!((params[1].name_off, params[1].type_id), (0, 0));
        let func = btf.type_by_id(19).unwrap();
        assert_eq!((func.vlen(), func.referenced()), (1, Some(18)));
        assert_eq!(btf.type_by_id(20).unwrap().var_linkage(), Some(1));
        let sec: Vec<_> = btf.type_by_id(21).unwrap().sec_infos().collect();
        assert_eq!(
            sec,
            [SecInfo {
                type_id: 20,
                offset: 0,
                size: 64
            }]
        );
        assert_eq!(btf.type_by_id(22).unwrap().size(), Some(8));
        assert_eq!(btf.type_by_id(23).unwrap().decl_tag_component(), Some(-1));
        assert_eq!(btf.type_by_id(24).unwrap().referenced(), Some(1));
        assert_eq!(btf.type_by_id(0).unwrap_err(), Error::NoSuchType(0));
        assert_eq!(btf.type_by_id(28).unwrap_err(), Error::NoSuchType(28));
    }

    #[test]
    fn unsigned_enum_values_are_not_sign_extended() {
        let mut b = Builder::new();
        b.enumeration("u", false, &[("TOP", -1)]);
        b.enumeration("s", true, &[("NEG", -1)]);
        b.enum64("u64", false, &[("TOP64", u64::MAX)]);
        let blob = b.build();
        let btf = Btf::parse(&blob).unwrap();
        let v: Vec<i128> = btf
            .types()
            .flat_map(|t| t.enumerators())
            .map(|e| e.value)
            .collect();
        assert_eq!(v, [u32::MAX as i128, -1, u64::MAX as i128]);
    }

    #[test]
    fn index_gives_the_same_records() {
        let blob = kitchen_sink();
        let btf = Btf::parse(&blob).unwrap();
        let mut small = [0u32; 26];
        assert_eq!(
            btf.with_index(&mut small).unwrap_err(),
            Error::IndexTooSmall
        );
        let mut index = [0u32; 27];
        let fast = btf.with_index(&mut index).unwrap();
        for id in 1..=27 {
            let (a, b) = (btf.type_by_id(id).unwrap(), fast.type_by_id(id).unwrap());
            assert_eq!(
                (a.kind(), a.name_off(), a.vlen()),
                (b.kind(), b.name_off(), b.vlen())
            );
        }
    }

    #[test]
    fn header_rules() {
        let good = kitchen_sink();
        let check = |f: &dyn Fn(&mut Vec<u8>), want: Error| {
            let mut blob = good.clone();
            f(&mut blob);
            assert_eq!(Btf::parse(&blob).unwrap_err(), want);
        };
        check(&|b| b[0] = 0, Error::BadMagic);
        check(&|b| b.swap(0, 1), Error::BigEndian);
        check(&|b| b[2] = 2, Error::UnsupportedVersion(2));
        check(&|b| b[3] = 1, Error::BadHeader("flags are not zero"));
        check(&|b| b.truncate(20), Error::Truncated);
        check(&|b| b.truncate(b.len() - 1), Error::Truncated);
        check(
            &|b| b.push(0),
            Error::BadHeader("bytes after the string section"),
        );
        check(
            &|b| set_u32(b, 4, 16),
            Error::BadHeader("header length out of range"),
        );
        // A gap between the sections.
        check(
            &|b| {
                let str_off = u32::from_le_bytes(b[16..20].try_into().unwrap());
                set_u32(b, 16, str_off + 4);
            },
            Error::BadHeader("sections do not tile the blob"),
        );
        // Last string byte not NUL.
        check(
            &|b| *b.last_mut().unwrap() = b'x',
            Error::BadHeader("string section does not start and end with NUL"),
        );
    }

    #[test]
    fn longer_header_needs_zero_padding() {
        let good = kitchen_sink();
        let mut blob = good[..24].to_vec();
        set_u32(&mut blob, 4, 32);
        blob.extend_from_slice(&[0; 8]);
        blob.extend_from_slice(&good[24..]);
        assert!(Btf::parse(&blob).is_ok());
        blob[30] = 1;
        assert_eq!(
            Btf::parse(&blob).unwrap_err(),
            Error::BadHeader("unknown header fields are set")
        );
    }

    #[test]
    fn record_rules() {
        let bad = |build: &dyn Fn(&mut Builder)| {
            let mut b = Builder::new();
            b.int("int", 4, 1);
            build(&mut b);
            match Btf::parse(&b.build()) {
                Err(Error::BadType { id: 2, why }) => why,
                other => panic!("expected a bad type 2, got {other:?}"),
            }
        };
        assert_eq!(
            bad(&|b| {
                b.raw("x", Kind::Int, false, 0, 4, &[64]);
            }),
            "int bits do not fit its size"
        );
        assert_eq!(
            bad(&|b| {
                b.raw("x", Kind::Int, false, 0, 3, &[8]);
            }),
            "int size is not 1, 2, 4, 8 or 16"
        );
        assert_eq!(
            bad(&|b| {
                b.raw("", Kind::Ptr, false, 0, 9, &[]);
            }),
            "refers to a type id that does not exist"
        );
        assert_eq!(
            bad(&|b| {
                b.raw("", Kind::Ptr, true, 0, 1, &[]);
            }),
            "kind_flag set on a kind that has none"
        );
        assert_eq!(
            bad(&|b| {
                b.raw("", Kind::Ptr, false, 1, 1, &[]);
            }),
            "vlen set on a kind that has none"
        );
        assert_eq!(
            bad(&|b| {
                b.raw("", Kind::Typedef, false, 0, 1, &[]);
            }),
            "a named kind has no name"
        );
        assert_eq!(
            bad(&|b| {
                b.raw("f", Kind::Func, false, 3, 1, &[]);
            }),
            "unknown function linkage"
        );
        assert_eq!(
            bad(&|b| {
                b.raw(".bss", Kind::Datasec, false, 1, 8, &[1, 4, 8]);
            }),
            "variable beyond the end of its section"
        );
        assert_eq!(
            bad(&|b| {
                b.raw("t", Kind::DeclTag, false, 0, 1, &[(-2i32) as u32]);
            }),
            "component index below -1"
        );
        assert_eq!(
            bad(&|b| {
                b.strukt("s", 4, &[("a", 1, 64)]);
            }),
            "member offset beyond the struct size"
        );
        assert_eq!(
            bad(&|b| {
                b.raw("", Kind::Array, false, 0, 0, &[1, 7, 2]);
            }),
            "refers to a type id that does not exist"
        );
        assert_eq!(
            bad(&|b| {
                b.raw("", Kind::Struct, false, 2, 8, &[0, 1, 0]);
            }),
            "record runs past the type section"
        );
        // Kind 20 does not exist (yet).
        let mut b = Builder::new();
        b.int("int", 4, 1);
        let mut blob = b.build();
        blob[24 + 7] = 20;
        assert_eq!(
            Btf::parse(&blob).unwrap_err(),
            Error::BadType {
                id: 1,
                why: "unknown kind"
            }
        );
    }

    /// Deterministic xorshift, so failures reproduce.
    fn rng(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    /// Runs every query a checker might make; must return, never panic.
    pub(crate) fn poke(btf: &Btf<'_>) {
        for t in btf.types() {
            let _ = btf.name(t.name_off());
            let _ = btf.size_of(t.id());
            let _ = t.members().count() + t.enumerators().count() + t.params().count();
        }
        for path in [
            "task.comm",
            "task.node.next",
            "task.f.b",
            "task.uid.val",
            "list_head.prev",
        ] {
            let _ = btf.field(path);
            let _ = btf.field_size(path);
            let _ = btf.array_len(path);
        }
        let _ = btf.enumerator("BIG");
    }

    #[test]
    fn every_truncation_is_an_error() {
        let blob = kitchen_sink();
        for len in 0..blob.len() {
            assert!(
                Btf::parse(&blob[..len]).is_err(),
                "prefix of {len} bytes parsed"
            );
        }
    }

    #[test]
    fn corrupted_blobs_never_panic() {
        let good = kitchen_sink();
        let mut seed = 0x5eed_b7f0_u64;
        let mut accepted = 0;
        for round in 0..4000 {
            let mut blob = good.clone();
            for _ in 0..1 + round % 4 {
                let at = (rng(&mut seed) % blob.len() as u64) as usize;
                blob[at] = match rng(&mut seed) % 3 {
                    0 => rng(&mut seed) as u8,
                    1 => blob[at] ^ (1 << (rng(&mut seed) % 8)),
                    _ => 0xff,
                };
            }
            if let Ok(btf) = Btf::parse(&blob) {
                accepted += 1;
                poke(&btf);
            }
        }
        // Most flips land in names or offsets that stay valid; some must be rejected.
        assert!(accepted > 0 && accepted < 4000, "accepted {accepted}");
    }
}
