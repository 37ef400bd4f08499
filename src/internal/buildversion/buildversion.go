// Package buildversion says which version a binary is: the one stamped at
// build time, else what the go command recorded.
package buildversion

import "runtime/debug"

// String returns stamped (set by -ldflags "-X main.version=1.2.3") when it
// is set; for a binary built without it (go install, go run), the module
// version or the VCS revision the go command recorded, else "dev".
func String(stamped string) string {
	if stamped != "" {
		return stamped
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		if v := info.Main.Version; v != "" && v != "(devel)" {
			return v
		}
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return "dev"
}
