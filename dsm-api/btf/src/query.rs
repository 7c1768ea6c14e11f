//! Questions a checker asks of a validated blob: a struct's size, a member path's offset, an
//! array's length, an enumerator's value. Every walk is bounded, so a hostile blob (cycles
//! through typedefs or anonymous members) yields an error, never a hang.

use crate::format::{Btf, Kind, Type};
use crate::Error;

/// Pointer size on the LP64 target (BTF records no pointer size of its own).
pub const POINTER_SIZE: u64 = 8;
/// How many typedef / qualifier / nested-array links a resolution may follow.
const MAX_CHAIN: usize = 32;
/// How deep anonymous structs and unions may nest.
const MAX_ANON_DEPTH: usize = 16;
/// How many members one path segment may inspect in total (anonymous descent included).
const MAX_MEMBER_VISITS: usize = 1 << 16;

/// Where a member sits inside the struct a path starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Offset from the start of the outermost struct, in bits.
    pub bit_offset: u64,
    /// Bitfield width, 0 for an ordinary member.
    pub bitfield_size: u8,
    /// The member's declared type (before resolving typedefs).
    pub type_id: u32,
}

impl Field {
    /// The offset in bytes; an error for bitfields and unaligned members.
    pub fn byte_offset(&self) -> Result<u64, Error> {
        if self.bitfield_size != 0 || !self.bit_offset.is_multiple_of(8) {
            return Err(Error::Bitfield);
        }
        Ok(self.bit_offset / 8)
    }
}

impl<'a> Btf<'a> {
    /// Follows typedefs and qualifiers (const, volatile, restrict, type tags) to the type
    /// they name. `Ok(None)` is `void`.
    pub fn resolve(&self, mut id: u32) -> Result<Option<Type<'a>>, Error> {
        for _ in 0..MAX_CHAIN {
            if id == 0 {
                return Ok(None);
            }
            let t = self.type_by_id(id)?;
            if !t.kind().is_modifier() {
                return Ok(Some(t));
            }
            id = t.referenced().unwrap_or(0);
        }
        Err(Error::TooDeep)
    }

    /// Size in bytes of a value of type `id`.
    pub fn size_of(&self, id: u32) -> Result<u64, Error> {
        let mut id = id;
        let mut factor: u64 = 1;
        for _ in 0..MAX_CHAIN {
            let t = self.resolve(id)?.ok_or(Error::NoSize(id))?;
            match t.kind() {
                Kind::Ptr => return factor.checked_mul(POINTER_SIZE).ok_or(Error::Overflow),
                Kind::Array => {
                    let a = t.array().ok_or(Error::NoSize(id))?;
                    factor = factor.checked_mul(a.nelems as u64).ok_or(Error::Overflow)?;
                    id = a.elem;
                }
                _ => {
                    let size = t.size().ok_or(Error::NoSize(t.id()))?;
                    return factor.checked_mul(size as u64).ok_or(Error::Overflow);
                }
            }
        }
        Err(Error::TooDeep)
    }

    /// The first type named `name` whose kind passes `want`.
    pub fn find_named(&self, name: &str, want: impl Fn(Kind) -> bool) -> Result<Type<'a>, Error> {
        self.types()
            .find(|t| want(t.kind()) && self.name_bytes(t.name_off()) == Ok(name.as_bytes()))
            .ok_or(Error::NotFound)
    }

    /// The complete struct or union named `name` (forward declarations are skipped). Two
    /// different definitions of one name (drivers do this) are an error, not a guess.
    pub fn find_composite(&self, name: &str) -> Result<Type<'a>, Error> {
        let mut hits = self.types().filter(|t| {
            matches!(t.kind(), Kind::Struct | Kind::Union)
                && self.name_bytes(t.name_off()) == Ok(name.as_bytes())
        });
        let first = hits.next().ok_or(Error::NotFound)?;
        match hits.next() {
            Some(_) => Err(Error::Ambiguous),
            None => Ok(first),
        }
    }

    /// Size of the struct or union `name`.
    pub fn struct_size(&self, name: &str) -> Result<u64, Error> {
        Ok(self.find_composite(name)?.size().unwrap_or(0) as u64)
    }

    /// Finds member `name` in the struct or union `id` (typedefs resolved), looking inside
    /// anonymous struct and union members too. The offset is relative to `id`.
    pub fn member(&self, id: u32, name: &str) -> Result<Field, Error> {
        let t = self.resolve(id)?.ok_or(Error::NotComposite(id))?;
        if !matches!(t.kind(), Kind::Struct | Kind::Union) {
            return Err(Error::NotComposite(t.id()));
        }
        let mut budget = MAX_MEMBER_VISITS;
        self.member_in(t, name.as_bytes(), 0, &mut budget)?
            .ok_or(Error::NoMember)
    }

    fn member_in(
        &self,
        t: Type<'a>,
        name: &[u8],
        depth: usize,
        budget: &mut usize,
    ) -> Result<Option<Field>, Error> {
        if depth > MAX_ANON_DEPTH {
            return Err(Error::TooDeep);
        }
        for m in t.members() {
            *budget = budget.checked_sub(1).ok_or(Error::TooDeep)?;
            let field = Field {
                bit_offset: m.bit_offset as u64,
                bitfield_size: m.bitfield_size,
                type_id: m.type_id,
            };
            if m.name_off == 0 {
                let Some(inner) = self.resolve(m.type_id)? else {
                    continue;
                };
                if !matches!(inner.kind(), Kind::Struct | Kind::Union) {
                    continue;
                }
                if let Some(f) = self.member_in(inner, name, depth + 1, budget)? {
                    return Ok(Some(Field {
                        bit_offset: field.bit_offset + f.bit_offset,
                        ..f
                    }));
                }
            } else if self.name_bytes(m.name_off)? == name {
                return Ok(Some(field));
            }
        }
        Ok(None)
    }

    /// Resolves a path `struct.member.member...` (e.g. `module.mkobj.kobj`), starting at the
    /// struct or union named by its first segment.
    pub fn field(&self, path: &str) -> Result<Field, Error> {
        let mut segments = path.split('.');
        let root = segments.next().filter(|s| !s.is_empty());
        let root = self.find_composite(root.ok_or(Error::BadPath)?)?;
        let mut field = Field {
            bit_offset: 0,
            bitfield_size: 0,
            type_id: root.id(),
        };
        let mut any = false;
        for segment in segments {
            if segment.is_empty() || field.bitfield_size != 0 {
                return Err(Error::BadPath);
            }
            let inner = self.member(field.type_id, segment)?;
            field = Field {
                bit_offset: field
                    .bit_offset
                    .checked_add(inner.bit_offset)
                    .ok_or(Error::Overflow)?,
                ..inner
            };
            any = true;
        }
        if !any {
            return Err(Error::BadPath);
        }
        Ok(field)
    }

    /// Byte offset of a member path (see [`Btf::field`]).
    pub fn offset_of(&self, path: &str) -> Result<u64, Error> {
        self.field(path)?.byte_offset()
    }

    /// Size in bytes of the member a path names.
    pub fn field_size(&self, path: &str) -> Result<u64, Error> {
        self.size_of(self.field(path)?.type_id)
    }

    /// Element count of the array member a path names.
    pub fn array_len(&self, path: &str) -> Result<u64, Error> {
        let f = self.field(path)?;
        let t = self.resolve(f.type_id)?.ok_or(Error::NotArray(f.type_id))?;
        let a = t.array().ok_or(Error::NotArray(t.id()))?;
        Ok(a.nelems as u64)
    }

    /// Value of the enumerator `name`, searched in every enum.
    pub fn enumerator(&self, name: &str) -> Result<i128, Error> {
        self.types()
            .filter(|t| matches!(t.kind(), Kind::Enum | Kind::Enum64))
            .flat_map(|t| t.enumerators())
            .find(|e| self.name_bytes(e.name_off) == Ok(name.as_bytes()))
            .map(|e| e.value)
            .ok_or(Error::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testblob::{kitchen_sink, Builder};

    #[test]
    fn paths_through_typedefs_and_anonymous_members() {
        let blob = kitchen_sink();
        let btf = Btf::parse(&blob).unwrap();
        let off = |p: &str| btf.offset_of(p);
        assert_eq!(off("task.tasks"), Ok(0));
        assert_eq!(off("task.tasks.prev"), Ok(8));
        // `node` and `rcu` live in an anonymous union at byte 16.
        assert_eq!(off("task.node"), Ok(16));
        assert_eq!(off("task.node.prev"), Ok(24));
        assert_eq!(off("task.rcu"), Ok(16));
        // `uid` is a const typedef of an anonymous struct.
        assert_eq!(off("task.uid"), Ok(32));
        assert_eq!(off("task.uid.val"), Ok(32));
        assert_eq!(off("task.euid.val"), Ok(36));
        assert_eq!(off("task.comm"), Ok(40));
        assert_eq!(btf.array_len("task.comm"), Ok(16));
        assert_eq!(btf.field_size("task.comm"), Ok(16));
        assert_eq!(btf.field_size("task.node"), Ok(16));
        assert_eq!(btf.field_size("task.tasks.next"), Ok(POINTER_SIZE));
        assert_eq!(btf.field_size("task.st"), Ok(4));
        assert_eq!(off("task.f.c"), Ok(57));
        let b = btf.field("task.f.b").unwrap();
        assert_eq!((b.bit_offset, b.bitfield_size), (451, 5));
        assert_eq!(b.byte_offset(), Err(Error::Bitfield));
        // The forward declaration of `list_head` comes first and is skipped.
        assert_eq!(btf.struct_size("list_head"), Ok(16));
        assert_eq!(btf.struct_size("task"), Ok(64));
        assert_eq!(btf.enumerator("ST_GONE"), Ok(2));
        assert_eq!(btf.enumerator("BIG_NEG"), Ok(-5));
        let big_t = btf.find_named("big_t", |k| k == Kind::Typedef).unwrap();
        assert_eq!(btf.size_of(big_t.id()), Ok(8));
    }

    #[test]
    fn path_errors() {
        let blob = kitchen_sink();
        let btf = Btf::parse(&blob).unwrap();
        assert_eq!(btf.field("task.nope"), Err(Error::NoMember));
        assert_eq!(btf.field("nope.tasks"), Err(Error::NotFound));
        assert_eq!(btf.field("task"), Err(Error::BadPath));
        assert_eq!(btf.field("task..tasks"), Err(Error::BadPath));
        assert_eq!(btf.field(".tasks"), Err(Error::BadPath));
        assert_eq!(btf.field("task.f.b.x"), Err(Error::BadPath));
        assert!(matches!(
            btf.field("task.tasks.next.next"),
            Err(Error::NotComposite(_))
        ));
        assert!(matches!(
            btf.array_len("task.tasks"),
            Err(Error::NotArray(_))
        ));
        assert_eq!(btf.enumerator("NOPE"), Err(Error::NotFound));
        // void and functions have no size.
        assert_eq!(btf.size_of(0), Err(Error::NoSize(0)));
        assert_eq!(btf.size_of(19), Err(Error::NoSize(19)));
    }

    #[test]
    fn two_definitions_of_one_name_are_ambiguous() {
        let mut b = Builder::new();
        let int = b.int("int", 4, 1);
        b.strukt("slot", 4, &[("a", int, 0)]);
        b.strukt("slot", 8, &[("b", int, 32)]);
        b.strukt("one", 4, &[("a", int, 0)]);
        let blob = b.build();
        let btf = Btf::parse(&blob).unwrap();
        assert_eq!(btf.field("slot.a"), Err(Error::Ambiguous));
        assert_eq!(btf.struct_size("slot"), Err(Error::Ambiguous));
        assert_eq!(btf.struct_size("one"), Ok(4));
    }

    #[test]
    fn nested_arrays_multiply() {
        let mut b = Builder::new();
        let int = b.int("int", 4, 1);
        let row = b.array(int, int, 4);
        let grid = b.array(row, int, 3);
        let huge = b.array(grid, int, u32::MAX);
        let huger = b.array(huge, int, u32::MAX);
        let blob = b.build();
        let btf = Btf::parse(&blob).unwrap();
        assert_eq!(btf.size_of(grid), Ok(48));
        assert_eq!(btf.size_of(huge), Ok(48 * u32::MAX as u64));
        assert_eq!(btf.size_of(huger), Err(Error::Overflow));
    }

    #[test]
    fn typedef_cycles_end_in_an_error() {
        let mut b = Builder::new();
        let a = b.refer("a", Kind::Typedef, 2);
        b.refer("b", Kind::Const, 1);
        let arr = b.array(4, 4, 2);
        b.array(arr, arr, 2);
        let blob = b.build();
        let btf = Btf::parse(&blob).unwrap();
        assert_eq!(btf.resolve(a).unwrap_err(), Error::TooDeep);
        assert_eq!(btf.size_of(a), Err(Error::TooDeep));
        assert_eq!(btf.size_of(arr), Err(Error::TooDeep));
        assert_eq!(btf.member(a, "x"), Err(Error::TooDeep));
    }

    #[test]
    fn self_containing_anonymous_members_end_in_an_error() {
        let mut b = Builder::new();
        b.strukt("loop", 4, &[("", 1, 0)]);
        let blob = b.build();
        let btf = Btf::parse(&blob).unwrap();
        assert_eq!(btf.field("loop.x"), Err(Error::TooDeep));
    }

    #[test]
    fn exponential_anonymous_fanout_is_bounded() {
        // Each level holds the next one twice, anonymously: 2^15 paths without a budget.
        let mut b = Builder::new();
        let mut inner = b.strukt("leaf", 4, &[("y", 0, 0)]);
        for _ in 0..15 {
            inner = b.strukt("", 4, &[("", inner, 0), ("", inner, 0), ("", inner, 0)]);
        }
        b.strukt("top", 4, &[("", inner, 0)]);
        let blob = b.build();
        let btf = Btf::parse(&blob).unwrap();
        assert_eq!(btf.field("top.x"), Err(Error::TooDeep));
        assert_eq!(btf.offset_of("top.y"), Ok(0));
    }
}
