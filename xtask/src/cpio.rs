//! A writer for the `newc` cpio format the kernel unpacks as an initramfs.
//!
//! Each entry: a 110-byte ASCII header (`070701` and 13 eight-digit hex fields), the
//! NUL-terminated name padded to 4 bytes, then the data padded to 4 bytes. The archive ends
//! with an entry named `TRAILER!!!`.

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

#[derive(Default)]
pub struct Archive {
    out: Vec<u8>,
    next_ino: u32,
}

impl Archive {
    pub fn new() -> Archive {
        Archive {
            out: Vec::new(),
            next_ino: 1,
        }
    }

    pub fn dir(&mut self, path: &str, perm: u32) {
        self.entry(path, S_IFDIR | perm, 2, (0, 0), &[]);
    }

    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) {
        self.entry(path, S_IFREG | perm, 1, (0, 0), data);
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes());
    }

    pub fn char_device(&mut self, path: &str, perm: u32, major: u32, minor: u32) {
        self.entry(path, S_IFCHR | perm, 1, (major, minor), &[]);
    }

    /// The archive with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.next_ino = 0;
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[]);
        self.out
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        let ino = self.next_ino;
        self.next_ino += 1;
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime: fixed, so the archive is reproducible
            data.len() as u32,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the archive back: (name, mode, rdev major, data) per entry.
    fn parse(mut bytes: &[u8]) -> Vec<(String, u32, u32, Vec<u8>)> {
        let mut entries = Vec::new();
        let mut offset = 0usize;
        loop {
            assert_eq!(&bytes[..6], b"070701", "magic at {offset}");
            let field = |i: usize| {
                let text = std::str::from_utf8(&bytes[6 + 8 * i..14 + 8 * i]).unwrap();
                u32::from_str_radix(text, 16).unwrap()
            };
            let (mode, size, major, namesize) = (field(1), field(6), field(9), field(11));
            let name_end = 110 + namesize as usize;
            assert_eq!(bytes[name_end - 1], 0, "name is NUL-terminated");
            let name = String::from_utf8(bytes[110..name_end - 1].to_vec()).unwrap();
            let data_at = name_end.next_multiple_of(4);
            let data = bytes[data_at..data_at + size as usize].to_vec();
            let next = (data_at + size as usize).next_multiple_of(4);
            offset += next;
            bytes = &bytes[next..];
            if name == "TRAILER!!!" {
                assert!(bytes.is_empty(), "nothing after the trailer");
                return entries;
            }
            entries.push((name, mode, major, data));
        }
    }

    #[test]
    fn round_trips_every_kind_of_entry() {
        let mut a = Archive::new();
        a.dir("bin", 0o755);
        a.file("bin/busybox", 0o755, b"12345");
        a.symlink("bin/sh", "busybox");
        a.char_device("dev/console", 0o600, 5, 1);
        a.file("init", 0o755, b"");
        let bytes = a.finish();
        assert_eq!(bytes.len() % 4, 0);
        let entries = parse(&bytes);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            ["bin", "bin/busybox", "bin/sh", "dev/console", "init"]
        );
        assert_eq!(entries[0].1, 0o040_755);
        assert_eq!(entries[1].1, 0o100_755);
        assert_eq!(entries[1].3, b"12345");
        assert_eq!(entries[2].1 & 0o170_000, S_IFLNK);
        assert_eq!(entries[2].3, b"busybox");
        assert_eq!((entries[3].1, entries[3].2), (0o020_600, 5));
        assert!(entries[4].3.is_empty());
    }
}
