package rules

import "testing"

func TestEnabledRules(t *testing.T) {
	tests := []struct {
		name    string
		enabled []bool
		want    int
	}{
		{"no rules", nil, 0},
		{"all enabled", []bool{true, true, true}, 3},
		{"none enabled", []bool{false, false}, 0},
		{"mixed", []bool{true, false, true, false}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &Config{}
			for _, on := range tt.enabled {
				cfg.Rules = append(cfg.Rules, Rule{Name: "r", Enabled: on})
			}
			if got := cfg.EnabledRules(); got != tt.want {
				t.Errorf("EnabledRules() = %d, want %d", got, tt.want)
			}
		})
	}
}
