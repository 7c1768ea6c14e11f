//! The RTOS image: boots, reports where it runs, then either probes its isolation (boot
//! argument bit 0) or starts the kernel with the self-tests and the latency probe.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("rtos is an aarch64-unknown-none image; run it with `cargo xtask run rtos-native`");
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod firmware {
    use core::panic::PanicInfo;
    use rtos::arch::{self, power, sysreg};
    use rtos::boot::BootInfo;
    use rtos::println;
    use rtos::probe::{Tally, PROBES};

    /// Called by the entry code with the boot registers.
    #[no_mangle]
    extern "C" fn rtos_main(x0: u64, x1: u64, x2: u64) -> ! {
        let info = BootInfo::from_registers(x0, x1, x2);
        arch::set_platform(info.platform);
        let tables = match arch::mmu::enable(info.platform) {
            Ok(tables) => tables,
            Err(err) => {
                println!("rtos: MMU setup failed: {err}");
                power::finish(false)
            }
        };
        println!("{}", info.banner());
        println!(
            "rtos: EL{}, boot argument {:#x}, MMU on ({tables} page tables)",
            sysreg::current_el(),
            info.boot_arg
        );

        if info.platform.is_bare() {
            let spinning = arch::neighbours::start();
            match spinning {
                0 => {}
                1 => println!("rtos: 1 more core spins beside the RTOS (a neighbour load)"),
                n => println!("rtos: {n} more cores spin beside the RTOS (a neighbour load)"),
            }
        }
        if !info.fault_probe_requested() {
            rtos::app::run(&info)
        }
        let mut tally = Tally::default();
        for probe in &PROBES {
            let faulted = arch::probe::run(probe);
            if !faulted {
                println!("fault probe: {probe} did not fault");
            }
            tally.record(faulted);
        }
        println!("{tally}");
        let success = tally.all_contained();

        if success {
            println!("rtos: done, powering off");
        } else {
            println!("rtos: FAILED, stopping");
        }
        power::finish(success)
    }

    #[panic_handler]
    fn panic(info: &PanicInfo<'_>) -> ! {
        println!("rtos: panic: {info}");
        power::finish(false)
    }
}
