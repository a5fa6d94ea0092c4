package dsv4

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

// The model is $DSV4_MODEL, by default the project's ../shared/golden/tiny-a.
func modelDir() string {
	if d := os.Getenv("DSV4_MODEL"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "..", "shared", "golden", "tiny-a")
}

func tokenizerDir() string {
	if d := os.Getenv("DSV4_TOKENIZER"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "..", "shared", "tokenizer", "deepseek-v4")
}

func TestGenerateMatchesOneAppend(t *testing.T) {
	m, err := LoadModel(modelDir())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s, err := NewSession(m)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sampler, err := NewSampler(0, 0, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	tokens := []int32{5, 6, 7}
	logits, err := s.Append(tokens)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		next, err := sampler.Sample(logits)
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, next)
		if logits, err = s.Append([]int32{next}); err != nil {
			t.Fatal(err)
		}
	}
	again, _ := NewSession(m)
	defer again.Close()
	last, err := again.Append(tokens)
	if err != nil {
		t.Fatal(err)
	}
	for i := range last {
		if math.IsNaN(float64(last[i])) || math.Abs(float64(last[i]-logits[i])) > 1e-4 {
			t.Fatalf("logit %d: %v vs %v", i, last[i], logits[i])
		}
	}
	if pos, _ := s.Position(); pos != 6 {
		t.Fatalf("position %d", pos)
	}
}

func TestErrors(t *testing.T) {
	if _, err := LoadModel("/nonexistent/model"); err == nil || err.(*Error).Name != "DSV4_ERR_IO" {
		t.Fatalf("expected DSV4_ERR_IO, got %v", err)
	}
	m, _ := LoadModel(modelDir())
	defer m.Close()
	s, _ := NewSession(m)
	defer s.Close()
	_, err := s.Append([]int32{1 << 30})
	if err == nil || err.(*Error).Name != "DSV4_ERR_OUT_OF_RANGE" || err.(*Error).Message == "" {
		t.Fatalf("expected DSV4_ERR_OUT_OF_RANGE with a message, got %v", err)
	}
}

func TestTokenizer(t *testing.T) {
	tok, err := LoadTokenizer(tokenizerDir())
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	ids, err := tok.Encode("Hello", false)
	if err != nil || len(ids) != 1 || ids[0] != 19923 {
		t.Fatalf("Hello -> %v %v", ids, err)
	}
	text := "héllo <｜User｜> 🌧️"
	plain, _ := tok.Encode(text, false)
	for _, id := range plain {
		if id == 128803 {
			t.Fatal("protocol token injected without the special flag")
		}
	}
	if back, _ := tok.Decode(plain); back != text {
		t.Fatalf("round trip: %q", back)
	}
}
