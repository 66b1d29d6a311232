package main

import (
	"context"
	"io"
)

func runShredCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int { return 2 }
