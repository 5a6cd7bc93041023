//! A GPU buffer that grows geometrically to fit per-frame instance data (never shrinks).

/// Smallest instance buffer allocated, in bytes.
const MIN_BYTES: u64 = 4096;

/// Capacity (bytes) for `needed` bytes when the buffer holds `current`: unchanged if it fits,
/// else the next power of two ≥ `needed` (at least 4 KiB), so N frames of growth cost
/// O(log N) reallocations.
pub fn grown_capacity(current: u64, needed: u64) -> u64 {
    if needed <= current {
        current
    } else {
        needed.max(MIN_BYTES).next_power_of_two()
    }
}

/// A `VERTEX | COPY_DST` buffer rewritten each frame with `queue.write_buffer`.
#[derive(Debug)]
pub(crate) struct InstanceBuffer {
    label: &'static str,
    buffer: wgpu::Buffer,
    /// Bytes written by the last upload.
    len: u64,
}

impl InstanceBuffer {
    pub(crate) fn new(device: &wgpu::Device, label: &'static str) -> Self {
        Self {
            label,
            buffer: Self::create(device, label, MIN_BYTES),
            len: 0,
        }
    }

    fn create(device: &wgpu::Device, label: &'static str, size: u64) -> wgpu::Buffer {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::VERTEX | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Uploads `bytes`, reallocating (geometrically) when they do not fit.
    pub(crate) fn upload(&mut self, device: &wgpu::Device, queue: &wgpu::Queue, bytes: &[u8]) {
        let needed = bytes.len() as u64;
        let capacity = grown_capacity(self.buffer.size(), needed);
        if capacity != self.buffer.size() {
            self.buffer = Self::create(device, self.label, capacity);
        }
        if !bytes.is_empty() {
            queue.write_buffer(&self.buffer, 0, bytes);
        }
        self.len = needed;
    }

    /// Slice of the bytes uploaded last (for `set_vertex_buffer`).
    pub(crate) fn slice(&self) -> wgpu::BufferSlice<'_> {
        self.buffer.slice(..self.len.max(4))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_geometric_and_never_shrinks() {
        assert_eq!(grown_capacity(0, 0), 0);
        assert_eq!(grown_capacity(0, 1), 4096);
        assert_eq!(grown_capacity(4096, 4096), 4096);
        assert_eq!(grown_capacity(4096, 4097), 8192);
        assert_eq!(grown_capacity(8192, 100), 8192);
        assert_eq!(grown_capacity(8192, 68 * 100_000), 8 << 20);
        // Growing one instance at a time from 0 to 100k instances reallocates only O(log n) times.
        let (mut cap, mut reallocs) = (MIN_BYTES, 0);
        for n in 0..100_000u64 {
            let next = grown_capacity(cap, n * 68);
            if next != cap {
                reallocs += 1;
                cap = next;
            }
        }
        assert!(reallocs <= 12, "{reallocs} reallocations");
    }
}
