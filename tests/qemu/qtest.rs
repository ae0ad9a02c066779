//! A client for QEMU's qtest text protocol (`-qtest stdio`): spawns
//! `qemu-system-x86_64 -machine q35 -S` with one NVMe device backed by a fresh raw disk image
//! in its own temporary directory, and speaks the line protocol (`readl ADDR` → `OK 0x…`).
//!
//! Test support, not library API. Pitfalls of Debian's QEMU 7.2 handled here (see
//! `nvme-prp-sgl.md` §6): there is no qtest accelerator module, so the vCPU is kept stopped
//! with `-S` (device emulation still runs in the main loop); `-qtest-log /dev/null` keeps the
//! protocol trace off stderr; QEMU does not exit on stdin EOF, so [`Drop`] kills it; every
//! instance gets its own image with `file.locking=off`, so parallel tests never contend.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Name of the emulator binary.
pub const QEMU: &str = "qemu-system-x86_64";

/// Guest RAM size in bytes (`-m`): guest-physical `[0, GUEST_RAM)` is RAM.
pub const GUEST_RAM: u64 = 256 << 20;

/// Env var that turns a missing QEMU into a test failure (CI sets it to `1`).
pub const REQUIRE_ENV: &str = "PHYSVEC_REQUIRE_QEMU";

/// Finds `qemu-system-x86_64` on `PATH` (or at `$PHYSVEC_QEMU`).
pub fn find_qemu() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PHYSVEC_QEMU") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(QEMU))
        .find(|p| p.is_file())
}

/// Returns the QEMU binary, or `None` after printing why the calling test is skipped.
///
/// # Panics
/// When QEMU is missing and `PHYSVEC_REQUIRE_QEMU=1`: a CI machine must run these tests.
pub fn qemu_or_skip(test: &str) -> Option<PathBuf> {
    match find_qemu() {
        Some(p) => Some(p),
        None if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") => {
            panic!("{test}: {QEMU} not found on PATH but {REQUIRE_ENV}=1 requires it")
        }
        None => {
            eprintln!(
                "{test}: SKIPPED: {QEMU} not found on PATH (install qemu-system-x86; \
                 set {REQUIRE_ENV}=1 to make this a failure)"
            );
            None
        }
    }
}

/// A running QEMU under qtest control, with its disk image.
pub struct Qtest {
    child: Child,
    tx: BufWriter<ChildStdin>,
    rx: BufReader<ChildStdout>,
    dir: PathBuf,
    image: PathBuf,
    /// Protocol round-trips so far.
    pub round_trips: u64,
}

static INSTANCE: AtomicU32 = AtomicU32::new(0);

impl Qtest {
    /// Writes `image` to a fresh temporary directory and starts QEMU with [`GUEST_RAM`] of guest
    /// RAM and an NVMe controller (`-device nvme`) on that raw image.
    ///
    /// # Panics
    /// When the directory cannot be written or QEMU does not start or answer.
    pub fn spawn(qemu: &Path, image: &[u8]) -> Qtest {
        Self::spawn_with(qemu, image, &[])
    }

    /// As [`Qtest::spawn`], with `extra` arguments appended to QEMU's command line (for
    /// example `["-device", "intel-iommu,aw-bits=48"]`).
    pub fn spawn_with(qemu: &Path, image: &[u8], extra: &[&str]) -> Qtest {
        let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("physvec-qtest-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create qtest temp dir");
        let img = dir.join("disk.img");
        std::fs::write(&img, image).expect("write disk image");
        let drive = format!(
            "if=none,id=d0,file={},format=raw,file.locking=off",
            img.display()
        );
        let mut child = Command::new(qemu)
            .args([
                "-machine",
                "q35",
                "-S",
                "-qtest",
                "stdio",
                "-qtest-log",
                "/dev/null",
            ])
            .args([
                "-display",
                "none",
                "-nodefaults",
                "-m",
                &format!("{}M", GUEST_RAM >> 20),
            ])
            .args(["-drive", &drive, "-device", "nvme,serial=physvec,drive=d0"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", qemu.display()));
        let tx = BufWriter::new(child.stdin.take().expect("stdin"));
        let rx = BufReader::new(child.stdout.take().expect("stdout"));
        let mut q = Qtest {
            child,
            tx,
            rx,
            dir,
            image: img,
            round_trips: 0,
        };
        // First reply proves the machine is up.
        q.readl(0);
        q
    }

    /// Path of the raw disk image (readable while QEMU runs: locking is off).
    pub fn image_path(&self) -> &Path {
        &self.image
    }

    /// Reads `len` bytes of the disk image file from the host side.
    pub fn read_image(&self, offset: u64, len: usize) -> Vec<u8> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&self.image).expect("open image");
        f.seek(SeekFrom::Start(offset)).expect("seek image");
        let mut buf = vec![0; len];
        f.read_exact(&mut buf).expect("read image");
        buf
    }

    /// Sends one command line and returns the reply after `OK` (without the `OK `).
    ///
    /// # Panics
    /// On a `FAIL` reply or when QEMU has gone away.
    pub fn cmd(&mut self, line: &str) -> String {
        self.round_trips += 1;
        writeln!(self.tx, "{line}")
            .and_then(|()| self.tx.flush())
            .unwrap_or_else(|e| panic!("qtest: QEMU went away before `{}`: {e}", short(line)));
        let mut reply = String::new();
        loop {
            reply.clear();
            let n = self.rx.read_line(&mut reply).expect("qtest: read reply");
            assert!(n > 0, "qtest: QEMU closed stdout after `{}`", short(line));
            // Asynchronous IRQ notifications only appear after irq_intercept_*; skip them.
            if !reply.starts_with("IRQ") {
                break;
            }
        }
        let reply = reply.trim_end();
        match reply.strip_prefix("OK") {
            Some(rest) => rest.trim_start().to_owned(),
            None => panic!("qtest: `{}` -> `{reply}`", short(line)),
        }
    }

    fn value(&mut self, line: &str) -> u64 {
        let r = self.cmd(line);
        let hex = r
            .strip_prefix("0x")
            .unwrap_or_else(|| panic!("qtest: `{line}` -> `{r}`"));
        u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("qtest: `{line}` -> `{r}`: {e}"))
    }

    /// `readb`: one byte of guest-physical memory or MMIO.
    pub fn readb(&mut self, addr: u64) -> u8 {
        self.value(&format!("readb {addr:#x}")) as u8
    }
    /// `readl`: a 32-bit little-endian load.
    pub fn readl(&mut self, addr: u64) -> u32 {
        self.value(&format!("readl {addr:#x}")) as u32
    }
    /// `readq`: a 64-bit little-endian load.
    pub fn readq(&mut self, addr: u64) -> u64 {
        self.value(&format!("readq {addr:#x}"))
    }
    /// `writeb`: a byte store.
    pub fn writeb(&mut self, addr: u64, v: u8) {
        self.cmd(&format!("writeb {addr:#x} {v:#x}"));
    }
    /// `writel`: a 32-bit store.
    pub fn writel(&mut self, addr: u64, v: u32) {
        self.cmd(&format!("writel {addr:#x} {v:#x}"));
    }
    /// `writeq`: a 64-bit store.
    pub fn writeq(&mut self, addr: u64, v: u64) {
        self.cmd(&format!("writeq {addr:#x} {v:#x}"));
    }
    /// `outl`: a 32-bit port write.
    pub fn outl(&mut self, port: u16, v: u32) {
        self.cmd(&format!("outl {port:#x} {v:#x}"));
    }
    /// `inl`: a 32-bit port read.
    pub fn inl(&mut self, port: u16) -> u32 {
        self.value(&format!("inl {port:#x}")) as u32
    }
    /// `memset ADDR SIZE VAL`.
    pub fn memset(&mut self, addr: u64, len: u64, v: u8) {
        if len > 0 {
            self.cmd(&format!("memset {addr:#x} {len:#x} {v:#x}"));
        }
    }
    /// Reads guest memory (`b64read`: ten times faster than hex `read` for big buffers).
    pub fn read(&mut self, addr: u64, buf: &mut [u8]) {
        if buf.is_empty() {
            return;
        }
        let r = self.cmd(&format!("b64read {addr:#x} {:#x}", buf.len()));
        let bytes = b64decode(&r).unwrap_or_else(|| panic!("qtest: bad base64 from b64read"));
        assert_eq!(bytes.len(), buf.len(), "qtest: b64read length");
        buf.copy_from_slice(&bytes);
    }
    /// Reads `len` bytes of guest memory into a new vector.
    pub fn read_vec(&mut self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.read(addr, &mut v);
        v
    }
    /// Writes guest memory (`b64write`).
    pub fn write(&mut self, addr: u64, buf: &[u8]) {
        if !buf.is_empty() {
            self.cmd(&format!(
                "b64write {addr:#x} {:#x} {}",
                buf.len(),
                b64encode(buf)
            ));
        }
    }
}

impl Drop for Qtest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn short(line: &str) -> &str {
    &line[..line.len().min(80)]
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (what glib's `g_base64_encode` produces).
pub fn b64encode(data: &[u8]) -> String {
    let mut out = Vec::with_capacity(data.len().div_ceil(3) * 4);
    let mut chunks = data.chunks_exact(3);
    for c in &mut chunks {
        let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        out.extend_from_slice(&[
            B64[(n >> 18) as usize],
            B64[(n >> 12) as usize & 63],
            B64[(n >> 6) as usize & 63],
            B64[n as usize & 63],
        ]);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let n = (u32::from(rest[0]) << 16) | (u32::from(*rest.get(1).unwrap_or(&0)) << 8);
        out.push(B64[(n >> 18) as usize]);
        out.push(B64[(n >> 12) as usize & 63]);
        out.push(if rest.len() == 2 {
            B64[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(b'=');
    }
    String::from_utf8(out).expect("base64 is ASCII")
}

/// Decodes standard base64 (padding optional); `None` on a bad character.
pub fn b64decode(s: &str) -> Option<Vec<u8>> {
    const BAD: u8 = 0xff;
    let mut table = [BAD; 256];
    for (i, &c) in B64.iter().enumerate() {
        table[c as usize] = i as u8;
    }
    let s = s.trim_end_matches('=').as_bytes();
    // Eight characters -> six bytes per step (this runs unoptimized in `cargo test` and
    // decodes every byte the tests read back, so keep the per-byte work small).
    let groups = s.len() / 8;
    let mut out = vec![0u8; groups * 6];
    for (o, c) in out.chunks_exact_mut(6).zip(s.chunks_exact(8)) {
        let mut n = 0u64;
        let mut bad = 0u8;
        for &ch in c {
            let v = table[ch as usize];
            bad |= v;
            n = (n << 6) | u64::from(v);
        }
        if bad & 0xc0 != 0 {
            return None;
        }
        o.copy_from_slice(&n.to_be_bytes()[2..]);
    }
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in &s[groups * 8..] {
        let v = table[c as usize];
        if v == BAD {
            return None;
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[test]
fn base64_round_trip() {
    for n in 0..10usize {
        let data: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(97) ^ 0xa5).collect();
        assert_eq!(b64decode(&b64encode(&data)).as_deref(), Some(&data[..]));
    }
    assert_eq!(b64encode(b"\xde\xad\xbe\xef"), "3q2+7w==");
}
