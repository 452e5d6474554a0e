package manifest

import "testing"

func TestContains(t *testing.T) {
	t.Parallel()
	live := map[string]any{
		"metadata": map[string]any{"name": "a", "labels": map[string]any{"x": "1", "added-by-someone": "y"}, "uid": "u"},
		"spec":     map[string]any{"duration": "8760h0m0s", "usages": []any{"a", "b"}, "size": int64(2048)},
		"status":   map[string]any{"ready": true},
	}
	tests := map[string]struct {
		want map[string]any
		ok   bool
	}{
		"fields another manager added do not count": {map[string]any{"metadata": map[string]any{"labels": map[string]any{"x": "1"}}}, true},
		"a changed value is a difference":           {map[string]any{"spec": map[string]any{"duration": "1h0m0s"}}, false},
		"a missing field is a difference":           {map[string]any{"spec": map[string]any{"isCA": true}}, false},
		"lists must match whole":                    {map[string]any{"spec": map[string]any{"usages": []any{"a"}}}, false},
		"an equal list matches":                     {map[string]any{"spec": map[string]any{"usages": []any{"a", "b"}}}, true},
		"numbers compare by value across types":     {map[string]any{"spec": map[string]any{"size": 2048}}, true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := Contains(live, tc.want); got != tc.ok {
				t.Errorf("Contains = %v, want %v", got, tc.ok)
			}
		})
	}
}
