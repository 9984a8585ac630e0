//! Page-locked ("pinned") host memory for a stream's per-batch transfers.
//!
//! From pageable memory the driver copies through a bounce buffer of its own: an upload costs an
//! extra host copy and a download blocks until it is done. From page-locked memory a transfer is
//! one DMA the stream runs in its order, so the thread that enqueues a batch goes on enqueueing
//! while the copy engine works, and a GPU's other streams (`gpu.streams`) overlap it with their
//! compute. Each buffer is grown to the largest batch seen and kept, because page-locking is slow
//! (a system call and page-table work per allocation).
//!
//! cudarc's own copy calls take a whole [`PinnedHostSlice`], which is grown past the batch, so
//! the copies here go through the raw driver calls for exactly the batch's elements; the guard
//! cudarc keeps on the slice is recorded only by its own calls, so a [`Staging`] records an
//! event of its own after each copy and waits on it before the host memory is written again or
//! freed.

use std::sync::Arc;

use cudarc::driver::{
    result, sys, CudaEvent, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr,
    DriverError, PinnedHostSlice, ValidAsZeroBits,
};

/// The smallest buffer allocated, in elements: a few short batches' worth, so that the first
/// batches after start-up do not each grow it.
const MIN_ELEMENTS: usize = 16 * 1024;

/// What the host does with a staging buffer, which decides how it is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The host writes it and the GPU reads it: write-combined, which the host writes fastest
    /// and the bus reads fastest, but which the host must never read back.
    Upload,
    /// The GPU writes it and the host reads it: ordinary cached page-locked memory.
    Download,
}

/// One page-locked host buffer, reused for every batch of one stream.
pub struct Staging<T> {
    direction: Direction,
    host: Option<PinnedHostSlice<T>>,
    /// Recorded after the last copy that reads or writes `host`.
    copied: Option<CudaEvent>,
}

impl<T: DeviceRepr + ValidAsZeroBits + Copy> Staging<T> {
    pub fn new(direction: Direction) -> Staging<T> {
        Staging {
            direction,
            host: None,
            copied: None,
        }
    }

    /// The first `len` elements of the host buffer, once no copy in flight still uses it; grown
    /// (to a power of two) when shorter.
    fn host(&mut self, stream: &Arc<CudaStream>, len: usize) -> Result<&mut [T], DriverError> {
        if let Some(copied) = &self.copied {
            copied.synchronize()?;
        }
        if self.host.as_ref().is_none_or(|h| h.len() < len) {
            // The old buffer (if any) is idle: the wait above covered its last copy.
            self.host = None;
            let capacity = len.next_power_of_two().max(MIN_ELEMENTS);
            let flags = match self.direction {
                Direction::Upload => sys::CU_MEMHOSTALLOC_WRITECOMBINED,
                Direction::Download => 0,
            };
            // SAFETY: the memory is uninitialised until the write_bytes below, and nothing reads
            // it before: the slice is made only after.
            let mut fresh = unsafe {
                stream
                    .context()
                    .alloc_pinned_with_flags::<T>(capacity, flags)
            }?;
            let start = fresh.as_mut_ptr()?;
            // SAFETY: `start` points at `capacity` elements of `T` just allocated for us alone;
            // T is valid as all-zero bits (its bound), so the zeroed memory is initialised.
            unsafe { std::ptr::write_bytes(start, 0, capacity) };
            self.host = Some(fresh);
        }
        let host = self.host.as_mut().expect("allocated above");
        Ok(&mut host.as_mut_slice()?[..len])
    }

    /// The event recorded after each copy, made before the first copy is enqueued, so that an
    /// enqueued copy always has one to record.
    fn event(&mut self, stream: &Arc<CudaStream>) -> Result<(), DriverError> {
        if self.copied.is_none() {
            // A download is waited for at once, for a whole pass of the model: block the thread
            // rather than spin a core the rest of the daemon needs.
            let flags = match self.direction {
                Direction::Upload => sys::CUevent_flags::CU_EVENT_DISABLE_TIMING,
                Direction::Download => sys::CUevent_flags::CU_EVENT_BLOCKING_SYNC,
            };
            self.copied = Some(stream.context().new_event(Some(flags))?);
        }
        Ok(())
    }

    /// Records the copy just enqueued. Should that fail, the event would not cover the copy, so
    /// the stream is waited for instead before the error is returned.
    fn record(&mut self, stream: &Arc<CudaStream>) -> Result<(), DriverError> {
        let recorded = self
            .copied
            .as_ref()
            .expect("made by event()")
            .record(stream);
        if recorded.is_err() {
            let _ = stream.synchronize();
        }
        recorded
    }

    /// `parts`, one after another, in a new device buffer on `stream`, copied from page-locked
    /// memory in one transfer; the copy is enqueued, not waited for: work enqueued on `stream`
    /// after it sees the values.
    pub fn upload(
        &mut self,
        stream: &Arc<CudaStream>,
        parts: &[&[T]],
    ) -> Result<CudaSlice<T>, DriverError> {
        debug_assert_eq!(self.direction, Direction::Upload);
        let len: usize = parts.iter().map(|p| p.len()).sum();
        // SAFETY: written in full by the copy below before any kernel on the stream reads it.
        let mut device = unsafe { stream.alloc::<T>(len.max(1)) }?;
        if len == 0 {
            return Ok(device);
        }
        self.event(stream)?;
        let host = self.host(stream, len)?;
        let mut at = 0;
        for part in parts {
            host[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        // Event tracking is off on our contexts, so the guard records nothing (as in the backend).
        let destination = device.device_ptr_mut(stream).0;
        // SAFETY: `destination` holds at least `len` elements (allocated above) and `host`
        // exactly `len`, page-locked; the host memory is not written or freed before
        // `copied` (recorded just after, on the same stream, or the stream synchronised when that
        // fails) has completed: `host()` and `Drop` wait on it first.
        unsafe { result::memcpy_htod_async(destination, host, stream.cu_stream()) }?;
        self.record(stream)?;
        Ok(device)
    }

    /// `device`'s values on the host, through page-locked memory, once everything enqueued on
    /// `stream` before has run.
    pub fn download(
        &mut self,
        stream: &Arc<CudaStream>,
        device: &CudaSlice<T>,
    ) -> Result<Vec<T>, DriverError> {
        debug_assert_eq!(self.direction, Direction::Download);
        let len = device.len();
        if len == 0 {
            return Ok(Vec::new());
        }
        let source = device.device_ptr(stream).0;
        self.event(stream)?;
        let host = self.host(stream, len)?;
        // SAFETY: `source` holds `len` elements and `host` exactly `len`, page-locked and not
        // touched by the host until the copy completes: the event is waited on just below.
        unsafe { result::memcpy_dtoh_async(host, source, stream.cu_stream()) }?;
        self.record(stream)?;
        self.copied
            .as_ref()
            .expect("made by event()")
            .synchronize()?;
        let host = self.host.as_ref().expect("allocated by host()");
        Ok(host.as_slice()?[..len].to_vec())
    }
}

impl<T> Drop for Staging<T> {
    fn drop(&mut self) {
        // The host memory must outlive any copy still reading or writing it.
        if let Some(copied) = &self.copied {
            let _ = copied.synchronize();
        }
    }
}
