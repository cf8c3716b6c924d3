//go:build unix

package provider

import (
	"errors"
	"net"
	"syscall"
)

// alive tells whether an idle connection is still open, without waiting:
// a peek finds nothing to read on a live one, and end of file (or data
// the server sent unasked, such as a timeout answer) on one the server
// closed.
func alive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	live := false
	err = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		live = errors.Is(rerr, syscall.EAGAIN) || errors.Is(rerr, syscall.EWOULDBLOCK)
		return true // done: never wait for readability
	})
	return err == nil && live
}
