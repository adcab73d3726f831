package chain

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/orthanc"
)

// FileResult is what happened to one sample file.
type FileResult struct {
	Kind             string
	File             string
	Modality         string
	Frames           int // 0 when the file has no NumberOfFrames
	SOPInstanceUID   string
	StudyInstanceUID string
	OrthancID        string // ID of the instance in Orthanc A
	OrthancStudyID   string // ID of its study in Orthanc A

	Sent    bool // STOW-RS through the chain succeeded
	Arrived bool // Orthanc B stores an instance with this SOP Instance UID
}

// Result is the outcome of Run. Counters are read after the last step,
// also when a step failed.
type Result struct {
	Files []FileResult

	// StowInstances is the number of instances Orthanc A reports as sent.
	StowInstances int
	// QIDOMatches is the number of matches of the QIDO-RS query /instances,
	// and QIDOFoundAll whether they include every sample.
	QIDOMatches  int
	QIDOFoundAll bool
	// WADOFile is the sample retrieved with WADO-RS. WADOMetadata is whether
	// its study's metadata listed it, and WADORetrieved whether Orthanc A
	// stored it again after it was deleted there and retrieved.
	WADOFile      string
	WADOMetadata  bool
	WADORetrieved bool

	// TokenRequests is the number of requests at the issuer's token endpoint.
	TokenRequests int64
	// DistinctTokens is the number of different tokens the gate accepted.
	DistinctTokens int
	GateAccepted   int64
	GateRejected   int64
	// GateNotFound counts requests outside the gate's base path.
	GateNotFound int64
}

// OK reports whether every sample was sent and arrived, QIDO-RS found them
// all, WADO-RS worked, and the gate neither rejected a request nor received
// one outside its base path.
func (r *Result) OK() bool {
	if len(r.Files) == 0 {
		return false
	}
	for _, file := range r.Files {
		if !file.Sent || !file.Arrived {
			return false
		}
	}
	return r.QIDOFoundAll && r.WADOMetadata && r.WADORetrieved &&
		r.GateAccepted > 0 && r.GateRejected == 0 && r.GateNotFound == 0
}

// Run drives the DICOMweb flow through Orthanc A's REST API. It uploads the
// samples to A and sends them to the protected server with STOW-RS. It checks
// on Orthanc B's own REST API that each arrived and queries them with QIDO-RS.
// Last, it deletes one study from A and retrieves it with WADO-RS. Run stops
// at the first failed step and returns the partial result with the error.
func Run(ctx context.Context, c *Chain, samples []Sample) (*Result, error) {
	result := &Result{}
	defer c.readCounters(result)

	steps := []struct {
		name string
		run  func(context.Context, *Chain, *Result) error
	}{
		{"upload samples to Orthanc A", func(ctx context.Context, c *Chain, r *Result) error {
			return upload(ctx, c, r, samples)
		}},
		{"send with STOW-RS", stow},
		{"check arrival on Orthanc B", checkArrival},
		{"query with QIDO-RS", qido},
		{"read metadata with WADO-RS", wadoMetadata},
		{"retrieve with WADO-RS", wadoRetrieve},
	}
	for _, step := range steps {
		if err := step.run(ctx, c, result); err != nil {
			return result, fmt.Errorf("%s: %w", step.name, err)
		}
	}
	return result, nil
}

func (c *Chain) readCounters(result *Result) {
	result.TokenRequests = c.Issuer.TokenRequests()
	stats := c.Gate.Stats()
	result.GateAccepted = stats.Accepted
	result.GateRejected = stats.Rejected
	result.GateNotFound = stats.NotFound
	result.DistinctTokens = stats.DistinctTokens
}

// Upload stores the samples in Orthanc A and returns their identifiers.
func Upload(ctx context.Context, a *orthanc.Client, samples []Sample) ([]FileResult, error) {
	dir, err := SampleDir(ctx)
	if err != nil {
		return nil, err
	}
	files := make([]FileResult, 0, len(samples))
	for _, sample := range samples {
		file, err := uploadOne(ctx, a, filepath.Join(dir, sample.File))
		if err != nil {
			return files, err
		}
		file.Kind = sample.Kind
		file.File = sample.File
		files = append(files, file)
	}
	return files, nil
}

func uploadOne(ctx context.Context, a *orthanc.Client, path string) (FileResult, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return FileResult{}, fmt.Errorf("read sample: %w", err)
	}
	uploaded, err := a.Upload(ctx, data)
	if err != nil {
		return FileResult{}, fmt.Errorf("upload %s: %w", filepath.Base(path), err)
	}
	tags, err := a.Tags(ctx, uploaded.ID)
	if err != nil {
		return FileResult{}, err
	}

	file := FileResult{
		Modality:         tags["Modality"],
		SOPInstanceUID:   tags["SOPInstanceUID"],
		StudyInstanceUID: tags["StudyInstanceUID"],
		OrthancID:        uploaded.ID,
		OrthancStudyID:   uploaded.ParentStudy,
	}
	if frames, err := strconv.Atoi(tags["NumberOfFrames"]); err == nil {
		file.Frames = frames
	}
	if file.SOPInstanceUID == "" || file.StudyInstanceUID == "" {
		return file, fmt.Errorf("%s has no SOPInstanceUID or StudyInstanceUID", filepath.Base(path))
	}
	return file, nil
}

func upload(ctx context.Context, c *Chain, r *Result, samples []Sample) error {
	files, err := Upload(ctx, c.OrthancA.Client, samples)
	r.Files = files
	return err
}

// Stow sends the uploaded files from Orthanc A to the protected server.
func Stow(ctx context.Context, c *Chain, files []FileResult) (int, error) {
	ids := make([]string, 0, len(files))
	for _, file := range files {
		ids = append(ids, file.OrthancID)
	}
	return c.OrthancA.Client.Stow(ctx, ServerName, ids)
}

func stow(ctx context.Context, c *Chain, r *Result) error {
	count, err := Stow(ctx, c, r.Files)
	if err != nil {
		return err
	}
	r.StowInstances = count
	for i := range r.Files {
		r.Files[i].Sent = true
	}
	if count != len(r.Files) {
		return fmt.Errorf("Orthanc A reports %d instances sent, want %d", count, len(r.Files))
	}
	return nil
}

// checkArrival looks up each SOP Instance UID on Orthanc B directly, not
// through the gate.
func checkArrival(ctx context.Context, c *Chain, r *Result) error {
	var missing []string
	for i, file := range r.Files {
		ids, err := c.OrthancB.Client.FindInstance(ctx, file.SOPInstanceUID)
		if err != nil {
			return err
		}
		r.Files[i].Arrived = len(ids) == 1
		if !r.Files[i].Arrived {
			missing = append(missing, file.File)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("not on Orthanc B: %v", missing)
	}
	return nil
}

func qido(ctx context.Context, c *Chain, r *Result) error {
	matches, err := c.OrthancA.Client.QIDO(ctx, ServerName, "/instances")
	if err != nil {
		return err
	}
	r.QIDOMatches = len(matches)

	found := make([]string, 0, len(matches))
	for _, match := range matches {
		found = append(found, firstValue(match, "00080018"))
	}
	r.QIDOFoundAll = true
	for _, file := range r.Files {
		if !slices.Contains(found, file.SOPInstanceUID) {
			r.QIDOFoundAll = false
			return fmt.Errorf("QIDO-RS /instances did not return %s (%s)", file.File, file.SOPInstanceUID)
		}
	}
	return nil
}

// firstValue returns the first value of a string attribute, for example the
// SOP Instance UID "00080018". It reads the DICOM JSON model (PS3.18 annex F),
// where "Value" is an array, and the form of Orthanc's /qido client route,
// which rewrites each attribute with "Value" as a plain string.
func firstValue(dataset map[string]any, tag string) string {
	attribute, _ := dataset[tag].(map[string]any)
	switch value := attribute["Value"].(type) {
	case string:
		return value
	case []any:
		if len(value) > 0 {
			first, _ := value[0].(string)
			return first
		}
	}
	return ""
}

// wadoTarget returns the index of the sample to retrieve: the first
// multi-frame one, or else the first one.
func wadoTarget(files []FileResult) int {
	for i, file := range files {
		if file.Frames > 1 {
			return i
		}
	}
	return 0
}

func wadoMetadata(ctx context.Context, c *Chain, r *Result) error {
	target := r.Files[wadoTarget(r.Files)]
	r.WADOFile = target.File

	var metadata []map[string]any
	uri := "/studies/" + target.StudyInstanceUID + "/metadata"
	if err := c.OrthancA.Client.Get(ctx, ServerName, uri, &metadata); err != nil {
		return err
	}
	for _, instance := range metadata {
		if firstValue(instance, "00080018") == target.SOPInstanceUID {
			r.WADOMetadata = true
			return nil
		}
	}
	return fmt.Errorf("metadata of study %s does not list %s", target.StudyInstanceUID, target.SOPInstanceUID)
}

func wadoRetrieve(ctx context.Context, c *Chain, r *Result) error {
	target := r.Files[wadoTarget(r.Files)]
	a := c.OrthancA.Client

	if err := a.DeleteStudy(ctx, target.OrthancStudyID); err != nil {
		return err
	}
	if ids, err := a.FindInstance(ctx, target.SOPInstanceUID); err != nil || len(ids) != 0 {
		return errors.Join(err, fmt.Errorf("%s is still on Orthanc A after DELETE", target.File))
	}

	received, err := a.RetrieveStudy(ctx, ServerName, target.StudyInstanceUID)
	if err != nil {
		return err
	}
	ids, err := a.FindInstance(ctx, target.SOPInstanceUID)
	if err != nil {
		return err
	}
	r.WADORetrieved = received > 0 && len(ids) == 1
	if !r.WADORetrieved {
		return fmt.Errorf("%s is not back on Orthanc A (%d instances received)", target.File, received)
	}
	return nil
}
