// Loads a model (argument or $DSV4_MODEL), generates a few tokens greedily and prints them.
//
//	go run ./examples/generate ../../../shared/golden/tiny-a
package main

import (
	"fmt"
	"os"

	"dsv4.dev/dsv4"
)

func main() {
	dir := os.Getenv("DSV4_MODEL")
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	if dir == "" {
		dir = "../../../shared/golden/tiny-a"
	}
	if err := run(dir); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	model, err := dsv4.LoadModel(dir)
	if err != nil {
		return err
	}
	defer model.Close()
	session, err := dsv4.NewSession(model)
	if err != nil {
		return err
	}
	defer session.Close()
	sampler, err := dsv4.NewSampler(0, 0, 1, 0)
	if err != nil {
		return err
	}
	logits, err := session.Append([]int32{1, 2, 3, 4})
	if err != nil {
		return err
	}
	var tokens []int32
	for i := 0; i < 8; i++ {
		next, err := sampler.Sample(logits)
		if err != nil {
			return err
		}
		tokens = append(tokens, next)
		if logits, err = session.Append([]int32{next}); err != nil {
			return err
		}
	}
	fmt.Printf("dsv4 %s generated: %v\n", dsv4.Version(), tokens)
	return nil
}
