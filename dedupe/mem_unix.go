//go:build unix

package dedupe

import "syscall"

// allocBytes returns n zeroed bytes outside the Go heap: a Set's table and
// arena are large, long-lived and hold no pointers, so keeping them off
// the heap spares the GC from scanning them and from letting the heap grow
// by their size again before it collects (GOGC counts them otherwise), and
// freeBytes gives them back to the system at once.
func allocBytes(n int) []byte {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]byte, n) // out of address space or mappings: the heap still works
	}
	return b
}

// freeBytes releases memory from allocBytes.
func freeBytes(b []byte) {
	if cap(b) > 0 {
		_ = syscall.Munmap(b[:cap(b)]) // EINVAL for heap memory (the fallback): the GC frees it
	}
}
