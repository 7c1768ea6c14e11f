//! Task contexts: the register frame every exception saves, and how a [`Dispatch`] turns
//! the frame being returned to into the next task's.
//!
//! Tasks run at EL1 on `SP_EL0` (EL1t); exceptions run on the kernel stack (`SP_EL1`),
//! where the vector code saves the whole interrupted state as a [`Frame`] and restores it
//! on return. Switching is therefore: copy the frame out to the old task's save slot, and
//! copy (or build) the new task's frame in its place.

use crate::kernel::{wait_result_registers, Dispatch, Resume, TaskId};

/// The saved state; the vector assembly depends on this exact layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    pub x: [u64; 31],
    pub elr: u64,
    pub spsr: u64,
    pub sp_el0: u64,
    pub fpsr: u64,
    pub fpcr: u64,
    pub q: [u128; 32],
}

pub const FRAME_SIZE: usize = 800;
const _: () = assert!(core::mem::size_of::<Frame>() == FRAME_SIZE);
const _: () = assert!(core::mem::offset_of!(Frame, elr) == 248);
const _: () = assert!(core::mem::offset_of!(Frame, sp_el0) == 264);
const _: () = assert!(core::mem::offset_of!(Frame, fpsr) == 272);
const _: () = assert!(core::mem::offset_of!(Frame, q) == 288);

/// `SPSR_EL1` for a task: EL1 using `SP_EL0` (EL1t), all of DAIF clear.
pub const SPSR_EL1T: u64 = 0b0100;

impl Frame {
    pub const ZERO: Frame = Frame {
        x: [0; 31],
        elr: 0,
        spsr: 0,
        sp_el0: 0,
        fpsr: 0,
        fpcr: 0,
        q: [0; 32],
    };

    /// A fresh context that calls `entry(arg)` on `stack_top` and, if `entry` returns,
    /// continues at `exit` (the link register).
    pub fn start(entry: u64, arg: u64, stack_top: u64, exit: u64) -> Frame {
        let mut frame = Frame::ZERO;
        frame.x[0] = arg;
        frame.x[30] = exit;
        frame.elr = entry;
        frame.spsr = SPSR_EL1T;
        frame.sp_el0 = stack_top;
        frame
    }

    /// The registers a service call returns in: `x0` = μITRON code, `x1` = value.
    pub fn set_return(&mut self, code: i32, value: u64) {
        self.x[0] = i64::from(code) as u64;
        self.x[1] = value;
    }
}

/// What building a context needs besides the task itself.
#[derive(Clone, Copy, Debug)]
pub struct Starts {
    /// Where a returning task entry goes (it exits the task).
    pub exit: u64,
    /// The idle loop and its stack.
    pub idle_entry: u64,
    pub idle_stack_top: u64,
    /// Stack top of the task with index 0; see [`Starts::stack_top`].
    pub first_stack_top: u64,
    /// Distance between consecutive task stacks.
    pub stack_stride: u64,
}

impl Starts {
    pub fn stack_top(&self, index: usize) -> u64 {
        self.first_stack_top + index as u64 * self.stack_stride
    }

    pub fn idle(&self) -> Frame {
        Frame::start(self.idle_entry, 0, self.idle_stack_top, self.idle_entry)
    }
}

fn index(task: TaskId) -> usize {
    usize::from(task.0) - 1
}

/// Makes `frame` (what the exception will return to) the context `dispatch` chose. The
/// frame belongs to `dispatch.from`, or to idle (or the boot code) when that is `None`.
pub fn switch(frame: &mut Frame, saved: &mut [Frame], dispatch: &Dispatch, starts: &Starts) {
    let Dispatch { from, to, resume } = *dispatch;
    if from != to {
        if let Some(from) = from {
            saved[index(from)] = *frame;
        }
    }
    let Some(to) = to else {
        if from.is_some() {
            *frame = starts.idle();
        }
        return;
    };
    match resume {
        Resume::Idle => *frame = starts.idle(),
        Resume::Start { entry, arg } => {
            let top = starts.stack_top(index(to));
            *frame = Frame::start(entry as u64, arg as u64, top, starts.exit);
        }
        Resume::Continue | Resume::Released(_) => {
            if from != Some(to) {
                *frame = saved[index(to)];
            }
            if let Resume::Released(result) = resume {
                let (code, value) = wait_result_registers(result);
                frame.set_return(code, value as u64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{WaitValue, E_TMOUT};

    const STARTS: Starts = Starts {
        exit: 0x100,
        idle_entry: 0x200,
        idle_stack_top: 0x9000,
        first_stack_top: 0x1_0000,
        stack_stride: 0x5000,
    };

    fn tagged(tag: u64) -> Frame {
        let mut frame = Frame::ZERO;
        frame.x[19] = tag;
        frame.q[8] = u128::from(tag) << 64;
        frame.elr = tag;
        frame
    }

    fn d(from: Option<u8>, to: Option<u8>, resume: Resume) -> Dispatch {
        Dispatch {
            from: from.map(TaskId),
            to: to.map(TaskId),
            resume,
        }
    }

    #[test]
    fn switch_saves_the_old_and_restores_the_new() {
        let mut saved = [Frame::ZERO; 3];
        saved[1] = tagged(2);
        let mut frame = tagged(1);
        switch(
            &mut frame,
            &mut saved,
            &d(Some(1), Some(2), Resume::Continue),
            &STARTS,
        );
        assert_eq!(saved[0], tagged(1));
        assert_eq!(frame, tagged(2));
    }

    #[test]
    fn continue_on_the_same_task_changes_nothing() {
        let mut saved = [Frame::ZERO; 2];
        let mut frame = tagged(1);
        switch(
            &mut frame,
            &mut saved,
            &d(Some(1), Some(1), Resume::Continue),
            &STARTS,
        );
        assert_eq!(frame, tagged(1));
        assert_eq!(saved[0], Frame::ZERO, "no needless copy");
    }

    #[test]
    fn start_builds_a_fresh_el1t_context_on_the_task_stack() {
        let mut saved = [Frame::ZERO; 3];
        let mut frame = tagged(1);
        let start = Resume::Start {
            entry: 0x4400_1000,
            arg: 7,
        };
        switch(&mut frame, &mut saved, &d(Some(1), Some(3), start), &STARTS);
        assert_eq!(saved[0], tagged(1));
        assert_eq!(frame.elr, 0x4400_1000);
        assert_eq!(frame.x[0], 7);
        assert_eq!(frame.x[30], STARTS.exit);
        assert_eq!(frame.sp_el0, 0x1_0000 + 2 * 0x5000);
        assert_eq!(frame.spsr, SPSR_EL1T);
        assert_eq!(frame.q, [0; 32]);
        assert_eq!(frame.x[19], 0);
    }

    #[test]
    fn restart_of_the_same_task_rebuilds_it() {
        let mut saved = [Frame::ZERO; 1];
        let mut frame = tagged(1);
        let start = Resume::Start {
            entry: 0x10,
            arg: 0,
        };
        switch(&mut frame, &mut saved, &d(Some(1), Some(1), start), &STARTS);
        assert_eq!(frame.elr, 0x10);
        assert_eq!(frame.sp_el0, STARTS.first_stack_top);
    }

    #[test]
    fn released_task_gets_its_result_in_x0_x1() {
        let mut saved = [Frame::ZERO; 2];
        saved[1] = tagged(2);
        let mut frame = tagged(1);
        let released = Resume::Released(Ok(WaitValue::Data(0xabc)));
        switch(
            &mut frame,
            &mut saved,
            &d(Some(1), Some(2), released),
            &STARTS,
        );
        assert_eq!((frame.x[0], frame.x[1], frame.elr), (0, 0xabc, 2));
        // Released without leaving the CPU: same frame, new registers.
        let timeout = Resume::Released(Err(E_TMOUT));
        switch(
            &mut frame,
            &mut saved,
            &d(Some(2), Some(2), timeout),
            &STARTS,
        );
        assert_eq!(frame.x[0] as i64, -50);
        assert_eq!(frame.elr, 2);
    }

    #[test]
    fn idle_in_and_out() {
        let mut saved = [Frame::ZERO; 2];
        let mut frame = tagged(1);
        switch(
            &mut frame,
            &mut saved,
            &d(Some(1), None, Resume::Idle),
            &STARTS,
        );
        assert_eq!(saved[0], tagged(1));
        assert_eq!(frame.elr, STARTS.idle_entry);
        assert_eq!(frame.sp_el0, STARTS.idle_stack_top);
        // Idle stays idle: its frame is left alone.
        frame.x[5] = 55;
        switch(
            &mut frame,
            &mut saved,
            &d(None, None, Resume::Idle),
            &STARTS,
        );
        assert_eq!(frame.x[5], 55);
        // Leaving idle does not save it anywhere.
        switch(
            &mut frame,
            &mut saved,
            &d(None, Some(1), Resume::Continue),
            &STARTS,
        );
        assert_eq!(frame, tagged(1));
        assert_eq!(saved[1], Frame::ZERO);
    }
}
