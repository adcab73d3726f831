package chain

import (
	"strings"
	"testing"
)

func TestFirstValue(t *testing.T) {
	tests := []struct {
		name    string
		tag     string
		dataset map[string]any
		want    string
	}{
		{"DICOM JSON array", "00080018", map[string]any{
			"00080018": map[string]any{"vr": "UI", "Value": []any{"1.2.3"}},
		}, "1.2.3"},
		{"Orthanc qido string", "00080018", map[string]any{
			"00080018": map[string]any{"vr": "UI", "Name": "SOPInstanceUID", "Value": "1.2.3"},
		}, "1.2.3"},
		{"empty array", "00080018", map[string]any{
			"00080018": map[string]any{"vr": "UI", "Value": []any{}},
		}, ""},
		{"no value", "00080018", map[string]any{"00080018": map[string]any{"vr": "UI"}}, ""},
		{"missing tag", "00080018", map[string]any{}, ""},
		{"number value", "00280008", map[string]any{
			"00280008": map[string]any{"vr": "IS", "Value": []any{2.0}},
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := firstValue(tt.dataset, tt.tag); got != tt.want {
				t.Errorf("firstValue = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWADOTarget(t *testing.T) {
	tests := []struct {
		name   string
		frames []int
		want   int
	}{
		{"first multi-frame", []int{0, 1, 2, 15}, 2},
		{"no multi-frame", []int{0, 1, 0}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := make([]FileResult, len(tt.frames))
			for i, frames := range tt.frames {
				files[i].Frames = frames
			}
			if got := wadoTarget(files); got != tt.want {
				t.Errorf("wadoTarget = %d, want %d", got, tt.want)
			}
		})
	}
}

func passingResult() Result {
	return Result{
		Files: []FileResult{
			{File: "CT_small.dcm", Kind: "CT image", Sent: true, Arrived: true},
			{File: "rtdose.dcm", Kind: "RT dose", Frames: 15, Sent: true, Arrived: true},
		},
		StowInstances: 2,
		QIDOMatches:   2,
		QIDOFoundAll:  true,
		WADOFile:      "rtdose.dcm",
		WADOMetadata:  true,
		WADORetrieved: true,
		TokenRequests: 1,
		GateAccepted:  4,
	}
}

func TestResultOK(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Result)
		want   bool
	}{
		{"all passed", func(*Result) {}, true},
		{"no files", func(r *Result) { r.Files = nil }, false},
		{"not sent", func(r *Result) { r.Files[0].Sent = false }, false},
		{"not arrived", func(r *Result) { r.Files[1].Arrived = false }, false},
		{"QIDO incomplete", func(r *Result) { r.QIDOFoundAll = false }, false},
		{"metadata failed", func(r *Result) { r.WADOMetadata = false }, false},
		{"retrieve failed", func(r *Result) { r.WADORetrieved = false }, false},
		{"gate accepted none", func(r *Result) { r.GateAccepted = 0 }, false},
		{"gate rejected one", func(r *Result) { r.GateRejected = 1 }, false},
		{"request outside the gate's path", func(r *Result) { r.GateNotFound = 1 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			result := passingResult()
			tt.change(&result)
			if got := result.OK(); got != tt.want {
				t.Errorf("OK = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWriteTable(t *testing.T) {
	result := passingResult()
	var b strings.Builder

	if err := result.WriteTable(&b); err != nil {
		t.Fatalf("WriteTable: %v", err)
	}
	lines := strings.Split(b.String(), "\n")

	if !strings.HasPrefix(lines[0], "FILE") || !strings.Contains(lines[0], "ARRIVED") {
		t.Errorf("header line = %q", lines[0])
	}
	if !strings.Contains(lines[2], "rtdose.dcm") || !strings.Contains(lines[2], " 15 ") {
		t.Errorf("row of rtdose.dcm = %q, want its 15 frames", lines[2])
	}
	if strings.Index(lines[1], "CT image") != strings.Index(lines[2], "RT dose") {
		t.Errorf("KIND column is not aligned:\n%s\n%s", lines[1], lines[2])
	}
	wants := []string{
		"token requests at the issuer",
		"gate requests accepted / rejected / outside its path  4 / 0 / 0",
	}
	for _, want := range wants {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
