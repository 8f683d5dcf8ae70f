package api

import (
	"fmt"
	"regexp"
	"strings"
)

// Label rules follow Kubernetes, which operators already know and whose
// selectors hosts may one day be matched with: keys are an optional DNS
// subdomain prefix and a slash, then a name; names and values are short
// alphanumeric strings that may contain '-', '_' and '.' inside.
const (
	maxLabels         = 64
	maxLabelNameLen   = 63
	maxLabelValueLen  = 63
	maxLabelPrefixLen = 253
)

var (
	labelNameRE    = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	dnsSubdomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

// validateLabelKey checks a label key such as "env" or
// "qinfra.io/role".
func validateLabelKey(k string) error {
	name := k
	if prefix, n, ok := strings.Cut(k, "/"); ok {
		if prefix == "" || len(prefix) > maxLabelPrefixLen || !dnsSubdomainRE.MatchString(prefix) {
			return fmt.Errorf("label key %q: prefix must be a DNS subdomain of at most %d characters", clip(k, 80), maxLabelPrefixLen)
		}
		name = n
	}
	if name == "" || len(name) > maxLabelNameLen || !labelNameRE.MatchString(name) {
		return fmt.Errorf("label key %q: name must be 1-%d characters of [A-Za-z0-9-_.], starting and ending alphanumeric", clip(k, 80), maxLabelNameLen)
	}
	return nil
}

// validateLabelValue checks a label value; empty is allowed.
func validateLabelValue(k, v string) error {
	if v == "" {
		return nil
	}
	if len(v) > maxLabelValueLen || !labelNameRE.MatchString(v) {
		return fmt.Errorf("label %q: value must be at most %d characters of [A-Za-z0-9-_.], starting and ending alphanumeric", clip(k, 80), maxLabelValueLen)
	}
	return nil
}

// validateLabels checks a whole label set.
func validateLabels(labels map[string]string) error {
	if len(labels) > maxLabels {
		return fmt.Errorf("%d labels given; at most %d are allowed", len(labels), maxLabels)
	}
	for k, v := range labels {
		if err := validateLabelKey(k); err != nil {
			return err
		}
		if err := validateLabelValue(k, v); err != nil {
			return err
		}
	}
	return nil
}

// parseLabelSelector parses "k=v" terms of ?label= filters.
func parseLabelSelector(terms []string) (map[string]string, error) {
	sel := make(map[string]string, len(terms))
	for _, t := range terms {
		k, v, ok := strings.Cut(t, "=")
		if !ok {
			return nil, fmt.Errorf("label filter %q: want key=value", clip(t, 80))
		}
		if err := validateLabelKey(k); err != nil {
			return nil, err
		}
		if prev, dup := sel[k]; dup && prev != v {
			// Two values for one key under AND can match nothing; saying so
			// beats an empty list that looks like "no such hosts".
			return nil, fmt.Errorf("label filter gives two values for %q", k)
		}
		sel[k] = v
	}
	return sel, nil
}

// matchLabels reports whether labels has every key=value of sel.
func matchLabels(labels, sel map[string]string) bool {
	for k, v := range sel {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
