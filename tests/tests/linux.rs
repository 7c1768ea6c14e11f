//! The Debian arm64 kernel and busybox initramfs as a partition of spumone on cores 1-3:
//! generated device tree, emulated console, virtual GIC and PSCI, driven with `--cmd`.

use spumone_tests::{
    boot_with, expect_clean_poweroff, expect_clean_stream, expect_command_result, expect_line,
    expect_no_line, fail,
};
use std::time::Duration;
use xtask::run::RunOutcome;

/// A boot takes about 5 s of guest time under TCG.
const BOOT_LIMIT: Duration = Duration::from_secs(120);

/// Boots `linux` with `cmd`; checks spumone entered the kernel with its DTB and the run ended
/// cleanly after `/init`'s ready line.
#[track_caller]
fn run_cmd(cmd: &str) -> RunOutcome {
    let run = boot_with("linux", |o| {
        o.cmd = Some(cmd.to_string());
        o.timeout = Some(BOOT_LIMIT);
    });
    expect_clean_poweroff(&run, BOOT_LIMIT);
    expect_clean_stream(&run);
    expect_line(&run, "[hv]", &["partition linux: DTB at 0x4fe00000"]);
    expect_line(
        &run,
        "[hv]",
        &["partition linux vcpu 0: entering at 0x48200000 on core 1"],
    );
    let ready = expect_line(&run, "[linux]", &["spumone: linux ready: 3 CPUs"]);
    let marker = expect_line(&run, "[linux]", &["spumone: command exit status"]);
    if marker < ready {
        fail(&run, "the status marker came before the ready line");
    }
    expect_line(
        &run,
        "[hv]",
        &["partition linux stopped (PSCI SYSTEM_OFF), exit code 0"],
    );
    run
}

#[test]
fn linux_boots_on_three_vcpus() {
    let run = run_cmd("nproc");
    expect_command_result(&run, "nproc", &["3"], 0);
}

#[test]
fn command_output_and_status_come_back() {
    let cmd = "echo hello; exit 7";
    let run = run_cmd(cmd);
    expect_command_result(&run, cmd, &["hello"], 7);
}

/// From Linux, reads of the RTOS's RAM (0x4400_0000) and of spumone's image (0x4020_0000)
/// end in an external abort spumone injects; Linux reports an oops of the reading kernel
/// thread, the shell goes on, and a read of Linux's own RAM still works.
#[test]
fn reading_foreign_memory_fails_without_harm() {
    // With `quiet` the console shows the oops but not pr_info: the results come from dmesg.
    let cmd = "insmod /lib/spumone/memprobe.ko phys=0x44000000,0x40200000,0x48000000; \
               echo \"insmod status $?\"; dmesg | grep 'memprobe: 0x'";
    let run = run_cmd(cmd);
    if run.command_status() != Some(0) {
        fail(&run, "the probe command failed");
    }
    expect_line(&run, "[linux]", &["insmod status 0"]);
    for addr in ["0x44000000", "0x40200000"] {
        expect_line(
            &run,
            "[hv]",
            &[
                &format!("unassigned MMIO read of 8 bytes at {addr}"),
                "external abort injected",
            ],
        );
        expect_line(
            &run,
            "[linux]",
            &[&format!("memprobe: {addr}: no value, the read faulted")],
        );
    }
    expect_line(
        &run,
        "[linux]",
        &["Internal error: synchronous external abort"],
    );
    expect_line(&run, "[linux]", &["memprobe: 0x48000000 = 0x"]);
}

/// Boots `scenario` running `cmd` with `dir/disk.img` as its (snapshot) disk, then removes
/// `dir`.
fn boot_with_disk(scenario: &str, cmd: &str, dir: &std::path::Path, limit: Duration) -> RunOutcome {
    let run = boot_with(scenario, |o| {
        o.cmd = Some(cmd.to_string());
        o.timeout = Some(limit);
        o.disk = Some(xtask::qemu::Disk {
            path: dir.join("disk.img"),
            writable: false,
        });
    });
    let _ = std::fs::remove_dir_all(dir);
    run
}

/// Serves one fixed HTTP response to every connection on a free loopback port (the guest
/// reaches it as 10.0.2.2 through QEMU's user network); returns the port.
fn serve_http(body: String) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let response = format!(
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    port
}

/// Linux's disk and network card are virtio-pci functions behind the SMMU spumone owns: the
/// disk reads back what the host wrote, a write goes through, DHCP and an HTTP fetch from
/// the host work, and no DMA faulted.
#[test]
fn disk_and_network_work_through_the_smmu() {
    let token = format!("spumone-{:x}", std::process::id() as u64 * 0x9e37_79b9);
    // A 4 MiB disk: the token, then a pattern the guest hashes whole.
    let dir = std::env::temp_dir().join(format!("spumone-pci-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let disk = dir.join("disk.img");
    let mut data: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    data[..token.len()].copy_from_slice(token.as_bytes());
    std::fs::write(&disk, &data).unwrap();
    let sum = std::process::Command::new("md5sum")
        .arg(&disk)
        .output()
        .unwrap();
    let sum = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let port = serve_http(format!("{token} over http\n"));
    let cmd = format!(
        "head -c {} /dev/vda; echo; md5sum /dev/vda; \
         dd if=/dev/zero of=/dev/vda bs=64k count=16 2>/dev/null && sync && echo written; \
         udhcpc -i eth0 -n -q -t 5 >/dev/null 2>&1 && wget -q -O- http://10.0.2.2:{port}/",
        token.len()
    );
    let run = boot_with_disk("linux", &cmd, &dir, BOOT_LIMIT);
    expect_clean_poweroff(&run, BOOT_LIMIT);
    expect_command_result(
        &run,
        &cmd,
        &[
            &token,
            &format!("{sum}  /dev/vda"),
            "written",
            &format!("{token} over http"),
        ],
        0,
    );
    expect_line(&run, "[hv]", &["SMMU smmu at 0x9050000 enabled"]);
    expect_line(
        &run,
        "[hv]",
        &["streams 0x0..0xff (pcie) translate into partition linux's RAM"],
    );
    expect_no_line(&run, "[hv]", "dma fault");
}

/// A DMA write into kernel rodata, which the DSM write-protects: Linux's own disk is told to
/// read a block into a rodata page (a raw bio, no CPU store). The SMMU mirrors the DSM's
/// write watch, so the device's write faults, spumone logs it, and the page is unchanged.
#[test]
fn dma_into_watched_kernel_rodata_faults_in_the_smmu() {
    let dir = std::env::temp_dir().join(format!("spumone-rodata-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let disk = dir.join("disk.img");
    std::fs::write(&disk, vec![0x5a_u8; 1 << 20]).unwrap();
    // The DSM takes its baselines (and sets its watches) a few seconds after Linux is up.
    let cmd = "sleep 15; e=$(grep ' _etext$' /proc/kallsyms | cut -d' ' -f1); \
               insmod /lib/spumone/dma_rodata.ko addr=0x$e offset=0x100000; \
               dmesg | grep -o 'dma_rodata: read of .*'; \
               dd if=/dev/vda bs=4k count=1 2>/dev/null | od -An -tx1 | head -n 1";
    let limit = Duration::from_secs(240);
    let run = boot_with_disk("demo", cmd, &dir, limit);
    expect_clean_poweroff(&run, limit);
    let watch = expect_line(&run, "[hv]", &["SMMU: DMA writes to 0x48210000..", "fault"]);
    let fault = expect_line(
        &run,
        "[hv]",
        &["dma fault: stream 0x10, address 0x49000000, write (permission fault)"],
    );
    if fault < watch {
        fail(
            &run,
            "the DMA faulted before the SMMU mirrored the DSM's watch",
        );
    }
    expect_line(
        &run,
        "[linux]",
        &["into PA 0x0000000049000000", "page unchanged"],
    );
    // The disk itself still works.
    expect_line(
        &run,
        "[linux]",
        &[" 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a"],
    );
}
