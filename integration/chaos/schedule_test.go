package main

import (
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestPlanIsDeterministic(t *testing.T) {
	a := plan(42, 3, 2*time.Second, 50)
	b := plan(42, 3, 2*time.Second, 50)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different plans")
	}
	if c := plan(43, 3, 2*time.Second, 50); reflect.DeepEqual(a, c) {
		t.Fatal("different seeds, same plan")
	}
	// A longer plan starts with the shorter one: a replay with a longer
	// duration repeats the faults of the shorter run first.
	if long := plan(42, 3, 2*time.Second, 80); !reflect.DeepEqual(long[:50], a) {
		t.Fatal("plan prefix changes with its length")
	}
}

func TestPlanCoversEveryKindEachRound(t *testing.T) {
	for seed := range uint64(20) {
		p := plan(seed, 3, 2*time.Second, 2*len(allKinds))
		for round := range 2 {
			var got []string
			for _, f := range p[round*len(allKinds) : (round+1)*len(allKinds)] {
				got = append(got, f.Kind)
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(allKinds))
			if !slices.Equal(got, want) {
				t.Fatalf("seed %d round %d: kinds %v", seed, round, got)
			}
		}
	}
}

func TestPlanParameters(t *testing.T) {
	ttl := 2 * time.Second
	for _, nodes := range []int{3, 5} {
		for _, f := range plan(7, nodes, ttl, 200) {
			if f.Target < 0 || f.Target >= nodes {
				t.Fatalf("target %d of %d nodes", f.Target, nodes)
			}
			switch f.Kind {
			case kindStop, kindKill9, kindKillLeader:
				if f.Hold <= ttl {
					t.Fatalf("%s hold %v not above TTL", f.Kind, f.Hold)
				}
			case kindSplit:
				if len(f.Minority) != (nodes-1)/2 || len(f.Minority) >= nodes-len(f.Minority) {
					t.Fatalf("split minority %v of %d", f.Minority, nodes)
				}
				for _, m := range f.Minority {
					if m < 0 || m >= nodes {
						t.Fatalf("minority member %d", m)
					}
				}
			case kindNetem:
				if f.Delay <= 0 || f.LossPct < 1 || f.LossPct > 10 {
					t.Fatalf("netem %+v", f)
				}
			}
			if f.Hold <= 0 {
				t.Fatalf("%s hold %v", f.Kind, f.Hold)
			}
		}
	}
}
