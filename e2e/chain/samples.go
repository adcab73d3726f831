package chain

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// pydicomTestFiles is where the Debian package python3-pydicom installs the
// DICOM files of pydicom's test suite.
const pydicomTestFiles = "/usr/lib/python3/dist-packages/pydicom/data/test_files"

// Sample is a DICOM file of pydicom's test suite.
type Sample struct {
	Kind string
	File string
}

// Samples are real DICOM files of different kinds. All of them have a DICOM
// Part 10 header, which Orthanc's POST /instances requires.
var Samples = []Sample{
	{Kind: "CT image", File: "CT_small.dcm"},
	{Kind: "MR image", File: "MR_small.dcm"},
	{Kind: "SC image, RLE", File: "SC_rgb_rle_2frame.dcm"},
	{Kind: "RT dose", File: "rtdose.dcm"},
	{Kind: "RT plan", File: "rtplan.dcm"},
	{Kind: "comprehensive SR", File: "test-SR.dcm"},
	{Kind: "12-lead ECG", File: "waveform_ecg.dcm"},
}

// SampleDir returns the folder of pydicom's test files. It queries
// /usr/bin/python3 for the pydicom folder when the Debian location does not exist.
func SampleDir(ctx context.Context) (string, error) {
	if _, err := os.Stat(filepath.Join(pydicomTestFiles, Samples[0].File)); err == nil {
		return pydicomTestFiles, nil
	}

	script := "import os, pydicom.data; print(os.path.dirname(pydicom.data.__file__))"
	output, err := exec.CommandContext(ctx, "/usr/bin/python3", "-c", script).Output()
	if err != nil {
		return "", fmt.Errorf("pydicom test files not found at %s and /usr/bin/python3 "+
			"cannot import pydicom (Debian package python3-pydicom): %w", pydicomTestFiles, err)
	}
	dir := filepath.Join(strings.TrimSpace(string(output)), "test_files")
	if _, err := os.Stat(filepath.Join(dir, Samples[0].File)); err != nil {
		return "", fmt.Errorf("pydicom test files not found in %s: %w", dir, err)
	}
	return dir, nil
}
