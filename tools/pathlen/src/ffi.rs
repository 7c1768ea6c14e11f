//! The few pieces of QEMU's TCG plugin API (version 1, QEMU 7.2's `qemu-plugin.h`) this plugin
//! uses, declared by hand. The functions live in the QEMU binary that loads the plugin, so the
//! cdylib links with them undefined and the dynamic loader resolves them at `dlopen` time.
//!
//! Each declaration was checked against the v1 header: the callback types take the vCPU index
//! as `unsigned int`, user data as `void *`, the plugin id as `uint64_t`; the callback flags
//! are a C enum (an `int`).

use std::ffi::{c_char, c_int, c_uint, c_void};

/// `qemu_plugin_id_t`.
pub type PluginId = u64;

/// `struct qemu_plugin_tb`, opaque: valid only during the translation callback.
#[repr(C)]
pub struct Tb {
    _opaque: [u8; 0],
}

/// `struct qemu_plugin_insn`, opaque: valid only during the translation callback.
#[repr(C)]
pub struct Insn {
    _opaque: [u8; 0],
}

/// `qemu_info_t`: what QEMU tells the plugin at install time (only read there).
#[repr(C)]
pub struct Info {
    pub target_name: *const c_char,
    pub version_min: c_int,
    pub version_cur: c_int,
    pub system_emulation: bool,
    /// `system.smp_vcpus` (the union's only member in system emulation).
    pub smp_vcpus: c_int,
    pub max_vcpus: c_int,
}

/// `enum qemu_plugin_cb_flags`: `QEMU_PLUGIN_CB_NO_REGS`, the callbacks read no register.
pub const CB_NO_REGS: c_int = 0;

/// `qemu_plugin_vcpu_tb_trans_cb_t`.
pub type TbTransCb = extern "C" fn(id: PluginId, tb: *mut Tb);
/// `qemu_plugin_vcpu_udata_cb_t`: a TB's or an instruction's execution.
pub type VcpuUdataCb = extern "C" fn(vcpu_index: c_uint, userdata: *mut c_void);
/// `qemu_plugin_udata_cb_t`: the at-exit callback.
pub type UdataCb = extern "C" fn(id: PluginId, userdata: *mut c_void);

unsafe extern "C" {
    pub fn qemu_plugin_register_vcpu_tb_trans_cb(id: PluginId, cb: TbTransCb);
    pub fn qemu_plugin_register_vcpu_tb_exec_cb(
        tb: *mut Tb,
        cb: VcpuUdataCb,
        flags: c_int,
        userdata: *mut c_void,
    );
    pub fn qemu_plugin_register_vcpu_insn_exec_cb(
        insn: *mut Insn,
        cb: VcpuUdataCb,
        flags: c_int,
        userdata: *mut c_void,
    );
    pub fn qemu_plugin_tb_n_insns(tb: *const Tb) -> usize;
    pub fn qemu_plugin_tb_get_insn(tb: *const Tb, idx: usize) -> *mut Insn;
    pub fn qemu_plugin_insn_vaddr(insn: *const Insn) -> u64;
    pub fn qemu_plugin_register_atexit_cb(id: PluginId, cb: UdataCb, userdata: *mut c_void);
    /// Goes to QEMU's log under `-d plugin` (stderr unless `-D FILE`).
    pub fn qemu_plugin_outs(string: *const c_char);
}
