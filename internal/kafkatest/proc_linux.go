package kafkatest

import "syscall"

// sysProcAttr makes the kernel kill the JVM if the test process dies
// without stopping it (a panic or a test timeout).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
