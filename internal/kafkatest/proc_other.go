//go:build !linux

package kafkatest

import "syscall"

// sysProcAttr returns nil: outside Linux nothing kills an orphaned JVM.
func sysProcAttr() *syscall.SysProcAttr { return nil }
