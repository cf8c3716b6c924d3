//go:build !unix

package dedupe

func allocBytes(n int) []byte { return make([]byte, n) }

func freeBytes([]byte) {}
