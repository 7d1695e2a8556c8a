//go:build !unix

package main

import "os"

// terminal reports no terminal: off Unix riffle prints plain text.
func terminal(*os.File) (width int, ok bool) { return 0, false }
