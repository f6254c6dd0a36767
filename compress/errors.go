package compress

import "errors"

// ErrCorrupt reports compressed input that is damaged, truncated or does not
// expand to the length it claims. Match it with errors.Is.
var ErrCorrupt = errors.New("compress: corrupt input")
