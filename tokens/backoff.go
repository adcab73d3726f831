package tokens

import (
	"math/rand/v2"
	"time"
)

// Backoff is the retry schedule after failed token requests: the n-th
// consecutive failure waits a random time in [Base, min(Max, Base*2^n)],
// which spreads the retries of replicas that failed together.
type Backoff struct {
	Base time.Duration
	Max  time.Duration
	// ConfigMin is the least wait after a configuration error such as
	// invalid_client, which a quick retry does not fix.
	ConfigMin time.Duration
}

// DefaultBackoff is the schedule used when none is configured.
var DefaultBackoff = Backoff{Base: time.Second, Max: 2 * time.Minute, ConfigMin: time.Minute}

// Delay returns the wait after the given number of consecutive failures
// (1 for the first) that ended with err.
func (b Backoff) Delay(failures int, err *FetchError) time.Duration {
	ceiling := b.Base
	for i := 1; i < failures && ceiling < b.Max; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, b.Max)

	delay := b.Base
	if ceiling > b.Base {
		delay += rand.N(ceiling - b.Base + 1)
	}
	if err != nil {
		if err.Class == ClassConfig {
			delay = max(delay, b.ConfigMin)
		}
		delay = max(delay, err.RetryAfter)
	}
	return delay
}
