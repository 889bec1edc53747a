package protocol

import (
	"maps"
	"slices"
	"strings"
)

// LabelString shows a labeled tunnel's labels as "k1=v1,k2=v2", sorted (logs, screens).
func LabelString(labels map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, k+"="+labels[k])
	}
	return strings.Join(parts, ",")
}
