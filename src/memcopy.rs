//! Memory copies for the static (musl) build on x86_64, which `main.rs` installs as `memcpy`
//! and `memmove` in place of musl's.
//!
//! musl's x86_64 `memcpy` copies the unaligned head and the tail a byte at a time with single
//! `movsb` instructions and the rest with `rep movsq`, whose start-up costs tens of cycles:
//! slow for the short copies that make up most of this service's (a field name, a value, a
//! subject, a line appended to its batch). Its backward `memmove` is `std; rep movsb`. Sampled
//! with `perf` over a 400,000-record drain, `memcpy` took 38 % of the static build's CPU, the
//! workers' encoding most of it (docs/BENCHMARKS.md); glibc's copies, with vector moves for
//! short sizes, are why the glibc build cost less.
//!
//! Copies of up to 128 bytes here are straight-line unaligned loads of 1 to 16 bytes, every
//! load before any store, so they are also correct for overlapping buffers (`memmove`). Longer
//! ones are `rep movsb`, which processors with ERMS (Ivy Bridge on) run at full speed for long
//! copies; an overlapping copy to a higher address runs it backwards, as musl does.
//!
//! Nothing here may compile to a call of `memcpy` (it would call itself): no loops (which LLVM
//! can turn into one), only fixed-size loads and stores of at most 16 bytes, which it emits as
//! plain moves, and the long copies in assembly. `main.rs` installs them only in optimised
//! builds, and the unit tests below check every size and overlap against a byte-by-byte copy.

use core::arch::asm;
use core::ptr::{read_unaligned, write_unaligned};

/// Copies `n` bytes from `src` to `dst`; the buffers may overlap.
///
/// # Safety
/// `src` must be valid for reads and `dst` for writes of `n` bytes.
#[inline(always)]
pub unsafe fn copy(dst: *mut u8, src: *const u8, n: usize) {
    if n <= 128 {
        copy_short(dst, src, n);
    } else if (dst as usize).wrapping_sub(src as usize) >= n {
        // `dst` is below `src`, or past its end: a forward copy never overwrites a byte
        // before it is read.
        forward(dst, src, n);
    } else {
        backward(dst, src, n);
    }
}

/// Up to 128 bytes: every load before any store, so overlap does not matter.
#[inline(always)]
unsafe fn copy_short(dst: *mut u8, src: *const u8, n: usize) {
    if n <= 16 {
        if n >= 8 {
            copy_ends::<u64>(dst, src, n);
        } else if n >= 4 {
            copy_ends::<u32>(dst, src, n);
        } else if n >= 2 {
            copy_ends::<u16>(dst, src, n);
        } else if n == 1 {
            *dst = *src;
        }
        return;
    }
    if n <= 32 {
        copy_ends::<u128>(dst, src, n);
        return;
    }
    let load = |offset: usize| read_unaligned(src.add(offset) as *const u128);
    let store = |offset: usize, value: u128| write_unaligned(dst.add(offset) as *mut u128, value);
    if n <= 64 {
        let (a, b, c, d) = (load(0), load(16), load(n - 32), load(n - 16));
        store(0, a);
        store(16, b);
        store(n - 32, c);
        store(n - 16, d);
    } else {
        let (a, b, c, d) = (load(0), load(16), load(32), load(48));
        let (e, f, g, h) = (load(n - 64), load(n - 48), load(n - 32), load(n - 16));
        store(0, a);
        store(16, b);
        store(32, c);
        store(48, d);
        store(n - 64, e);
        store(n - 48, f);
        store(n - 32, g);
        store(n - 16, h);
    }
}

/// `n` bytes, between one and two `T`s: the first `T` and the last, which overlap in the
/// middle; both loaded before either is stored.
#[inline(always)]
unsafe fn copy_ends<T: Copy>(dst: *mut u8, src: *const u8, n: usize) {
    let size = core::mem::size_of::<T>();
    let (first, last) = (
        read_unaligned(src as *const T),
        read_unaligned(src.add(n - size) as *const T),
    );
    write_unaligned(dst as *mut T, first);
    write_unaligned(dst.add(n - size) as *mut T, last);
}

#[inline(always)]
unsafe fn forward(dst: *mut u8, src: *const u8, n: usize) {
    asm!(
        "rep movsb",
        inout("rcx") n => _,
        inout("rdi") dst => _,
        inout("rsi") src => _,
        options(nostack, preserves_flags)
    );
}

/// From the last byte down, for a `dst` that overlaps the end of `src`. The direction flag is
/// clear again on return, as the ABI requires.
#[inline(always)]
unsafe fn backward(dst: *mut u8, src: *const u8, n: usize) {
    asm!(
        "std",
        "rep movsb",
        "cld",
        inout("rcx") n => _,
        inout("rdi") dst.add(n - 1) => _,
        inout("rsi") src.add(n - 1) => _,
        options(nostack)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer of distinct bytes, so a byte copied from the wrong place shows.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn every_size_and_alignment_copies_exactly_and_touches_nothing_else() {
        for n in 0..=300 {
            for src_offset in 0..8 {
                for dst_offset in 0..8 {
                    let src = pattern(n + 16);
                    let mut dst = vec![0xAAu8; n + 32];
                    unsafe {
                        copy(
                            dst.as_mut_ptr().add(8 + dst_offset),
                            src.as_ptr().add(src_offset),
                            n,
                        )
                    };
                    let mut expected = vec![0xAAu8; n + 32];
                    expected[8 + dst_offset..8 + dst_offset + n]
                        .copy_from_slice(&src[src_offset..src_offset + n]);
                    assert_eq!(dst, expected, "n {n}, src +{src_offset}, dst +{dst_offset}");
                }
            }
        }
    }

    #[test]
    fn overlapping_copies_in_either_direction_are_memmove() {
        for n in 0..=300 {
            for shift in 1..=40usize {
                for up in [true, false] {
                    let len = n + shift + 16;
                    let mut buf = pattern(len);
                    let mut expected = buf.clone();
                    let (from, to) = if up { (8, 8 + shift) } else { (8 + shift, 8) };
                    if to + n > len || from + n > len {
                        continue;
                    }
                    expected.copy_within(from..from + n, to);
                    let base = buf.as_mut_ptr();
                    unsafe { copy(base.add(to), base.add(from), n) };
                    assert_eq!(buf, expected, "n {n}, shift {shift}, up {up}");
                }
            }
        }
    }

    #[test]
    fn long_copies_of_a_batch_size() {
        for n in [4096, 65_537, 1 << 20] {
            let src = pattern(n);
            let mut dst = vec![0u8; n];
            unsafe { copy(dst.as_mut_ptr(), src.as_ptr(), n) };
            assert_eq!(dst, src);
        }
    }
}
