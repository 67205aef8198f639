package check

import (
	"reflect"
	"testing"
)

func TestQuorumLost(t *testing.T) {
	tests := []struct {
		name string
		up   map[string][]Interval
		want []Interval
	}{
		{
			name: "all up",
			up:   map[string][]Interval{"n1": {{0, 100}}, "n2": {{0, 100}}, "n3": {{0, 100}}},
		},
		{
			name: "one down keeps quorum",
			up:   map[string][]Interval{"n1": {{0, 40}, {60, 100}}, "n2": {{0, 100}}, "n3": {{0, 100}}},
		},
		{
			name: "kill-all: lost until the second node is ready",
			up: map[string][]Interval{
				"n1": {{0, 40}, {55, 100}}, "n2": {{0, 40}, {52, 100}}, "n3": {{0, 40}, {58, 100}},
			},
			want: []Interval{{40, 55}},
		},
		{
			name: "two crashed, never back",
			up:   map[string][]Interval{"n1": {{0, 100}}, "n2": {{0, 30}}, "n3": {{0, 70}}},
			want: []Interval{{70, 100}},
		},
		{
			name: "late start",
			up:   map[string][]Interval{"n1": {{10, 100}}, "n2": {{20, 100}}, "n3": {{0, 100}}},
			want: []Interval{{0, 10}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := QuorumLost(tt.up, 2, 0, 100); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSubtract(t *testing.T) {
	got := Subtract([]Interval{{0, 100}, {200, 300}}, []Interval{{50, 60}, {250, 400}})
	want := []Interval{{0, 50}, {60, 100}, {200, 250}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
