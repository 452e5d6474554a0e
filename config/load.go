package config

import (
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/util/validation/field"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// MaxFileSize bounds what Decode reads; a configuration is a few KiB.
const MaxFileSize = 1 << 20

// Decode parses one configuration document strictly: an unknown or duplicated
// field is an error that names it. It neither defaults nor validates, so that
// flag overrides can be applied in between.
func Decode(data []byte) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("configuration is %d bytes, larger than the %d byte limit", len(data), MaxFileSize)
	}
	// YAMLToJSONStrict refuses duplicate keys; sigs.k8s.io/json then names
	// every unknown field with its full path (server.privateKey.bits), which
	// yaml.UnmarshalStrict does not.
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("decode configuration: %w", err)
	}
	c := &Config{}
	strictErrs, err := kjson.UnmarshalStrict(js, c, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return nil, fmt.Errorf("decode configuration: %w", err)
	}
	if len(strictErrs) > 0 {
		return nil, fmt.Errorf("decode configuration: %w", errors.Join(strictErrs...))
	}
	return c, nil
}

// ReadFile decodes the configuration at path ("-" is standard input).
func ReadFile(path string) (*Config, error) {
	var (
		data []byte
		err  error
	)
	if path == "-" {
		data, err = io.ReadAll(io.LimitReader(os.Stdin, MaxFileSize+1))
	} else {
		data, err = readLimited(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read configuration %q: %w", path, err)
	}
	c, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("configuration %q: %w", path, err)
	}
	return c, nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, MaxFileSize+1))
}

// Complete defaults c and validates it, returning every problem at once.
func Complete(c *Config) error {
	SetDefaults(c)
	if errs := Validate(c, nil); len(errs) > 0 {
		return &InvalidError{Errors: errs}
	}
	return nil
}

// InvalidError lists every validation problem of a configuration.
type InvalidError struct {
	Errors field.ErrorList
}

func (e *InvalidError) Error() string {
	msg := "invalid configuration:"
	for _, fe := range e.Errors {
		msg += "\n  " + fe.Error()
	}
	return msg
}

// IsInvalid reports whether err is, or wraps, a validation failure.
func IsInvalid(err error) bool {
	var ie *InvalidError
	return errors.As(err, &ie)
}
