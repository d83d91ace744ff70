//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package badgerstore

import "io/fs"

// allocated returns the disk space a file takes; without block counts, its length.
func allocated(info fs.FileInfo) int64 { return info.Size() }
