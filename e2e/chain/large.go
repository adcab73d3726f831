package chain

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/orthanc"
)

// Shape of the large instance: 96 frames of 512 x 512 pixels of 8 bits are
// 24 MiB of pixel data, 24 times nginx's default client_max_body_size of
// 1 MiB, and small enough to keep the test fast.
const (
	largeRows    = 512
	largeColumns = 512
	largeFrames  = 96
)

// largeScript writes a Multi-frame Grayscale Byte Secondary Capture instance
// in explicit VR little endian with random pixel data, which no layer can
// compress, and prints its SOP Instance UID. It needs pydicom but not numpy.
// Arguments: output path, rows, columns, frames.
const largeScript = `
import os, sys
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

path, rows, columns, frames = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sop_class = "1.2.840.10008.5.1.4.1.1.7.2"
sop_instance = generate_uid()

meta = FileMetaDataset()
meta.MediaStorageSOPClassUID = sop_class
meta.MediaStorageSOPInstanceUID = sop_instance
meta.TransferSyntaxUID = ExplicitVRLittleEndian

ds = Dataset()
ds.file_meta = meta
ds.is_little_endian = True
ds.is_implicit_VR = False
ds.SOPClassUID = sop_class
ds.SOPInstanceUID = sop_instance
ds.StudyInstanceUID = generate_uid()
ds.SeriesInstanceUID = generate_uid()
ds.PatientName = "E2E^Large"
ds.PatientID = "e2e-large"
ds.StudyID = "1"
ds.SeriesNumber = 1
ds.InstanceNumber = 1
ds.Modality = "OT"
ds.ConversionType = "WSD"
ds.SamplesPerPixel = 1
ds.PhotometricInterpretation = "MONOCHROME2"
ds.Rows = rows
ds.Columns = columns
ds.NumberOfFrames = frames
ds.BitsAllocated = 8
ds.BitsStored = 8
ds.HighBit = 7
ds.PixelRepresentation = 0
ds.PixelData = os.urandom(rows * columns * frames)
ds.save_as(path, write_like_original=False)
print(sop_instance)
`

// Digest is the size and the MD5 of a file. MD5 detects changes in
// transit here; it is not used for security.
type Digest struct {
	Size int64
	MD5  string // lower-case hexadecimal
}

func (d Digest) String() string { return fmt.Sprintf("%d bytes, MD5 %s", d.Size, d.MD5) }

// LargeInstance is a generated DICOM file.
type LargeInstance struct {
	Path           string
	SOPInstanceUID string
	Digest         Digest
}

// GenerateLarge writes a DICOM instance of about 24 MiB into dir with
// /usr/bin/python3 and pydicom, the Debian package python3-pydicom.
func GenerateLarge(ctx context.Context, dir string) (LargeInstance, error) {
	path := filepath.Join(dir, "large.dcm")
	args := []string{"-c", largeScript, path,
		strconv.Itoa(largeRows), strconv.Itoa(largeColumns), strconv.Itoa(largeFrames)}
	output, err := exec.CommandContext(ctx, "/usr/bin/python3", args...).CombinedOutput()
	if err != nil {
		return LargeInstance{}, fmt.Errorf("generate large DICOM instance with pydicom: %w: %s",
			err, strings.TrimSpace(string(output)))
	}

	file, err := os.Open(path)
	if err != nil {
		return LargeInstance{}, fmt.Errorf("open generated instance: %w", err)
	}
	defer file.Close()
	digest, err := digestOf(file)
	if err != nil {
		return LargeInstance{}, fmt.Errorf("read generated instance: %w", err)
	}
	return LargeInstance{
		Path:           path,
		SOPInstanceUID: strings.TrimSpace(string(output)),
		Digest:         digest,
	}, nil
}

func digestOf(r io.Reader) (Digest, error) {
	hash := md5.New()
	n, err := io.Copy(hash, r)
	return Digest{Size: n, MD5: hex.EncodeToString(hash.Sum(nil))}, err
}

// LargeResult is the outcome of RunLarge.
type LargeResult struct {
	// SentInstances is the number of instances Orthanc A reports as sent
	// with STOW-RS.
	SentInstances int
	// Arrived is the file that Orthanc B stores.
	Arrived Digest
	// Retrieved is the file that Orthanc A stores after WADO-RS.
	Retrieved Digest
}

// RunLarge uploads the instance to Orthanc A and sends it to the protected
// server with STOW-RS. It reads the file that Orthanc B stored, directly
// from B's REST API. Then it deletes the study from A, retrieves it with
// WADO-RS and reads the file that A stored. It stops at the first failed
// step and returns the partial result with the error.
func RunLarge(ctx context.Context, c *Chain, instance LargeInstance) (*LargeResult, error) {
	result := &LargeResult{}
	a, b := c.OrthancA.Client, c.OrthancB.Client

	data, err := os.ReadFile(instance.Path)
	if err != nil {
		return result, fmt.Errorf("read large instance: %w", err)
	}
	uploaded, err := a.Upload(ctx, data)
	if err != nil {
		return result, fmt.Errorf("upload large instance to Orthanc A: %w", err)
	}
	tags, err := a.Tags(ctx, uploaded.ID)
	if err != nil {
		return result, err
	}

	result.SentInstances, err = Stow(ctx, c, []FileResult{{OrthancID: uploaded.ID}})
	if err != nil {
		return result, fmt.Errorf("send large instance with STOW-RS: %w", err)
	}
	result.Arrived, err = storedDigest(ctx, b, instance.SOPInstanceUID)
	if err != nil {
		return result, fmt.Errorf("Orthanc B: %w", err)
	}

	if err := a.DeleteStudy(ctx, uploaded.ParentStudy); err != nil {
		return result, err
	}
	if _, err := a.RetrieveStudy(ctx, ServerName, tags["StudyInstanceUID"]); err != nil {
		return result, fmt.Errorf("retrieve large instance with WADO-RS: %w", err)
	}
	result.Retrieved, err = storedDigest(ctx, a, instance.SOPInstanceUID)
	if err != nil {
		return result, fmt.Errorf("Orthanc A after WADO-RS: %w", err)
	}
	return result, nil
}

// storedDigest finds the instance by SOP Instance UID and returns the size
// and MD5 of the file that Orthanc stores.
func storedDigest(ctx context.Context, client *orthanc.Client, sopInstanceUID string) (Digest, error) {
	ids, err := client.FindInstance(ctx, sopInstanceUID)
	if err != nil {
		return Digest{}, err
	}
	if len(ids) != 1 {
		return Digest{}, fmt.Errorf("found %d instances with SOP Instance UID %s, want 1", len(ids), sopInstanceUID)
	}
	hash := md5.New()
	n, err := client.CopyFile(ctx, ids[0], hash)
	if err != nil {
		return Digest{}, err
	}
	return Digest{Size: n, MD5: hex.EncodeToString(hash.Sum(nil))}, nil
}
