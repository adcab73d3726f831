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

	// jitter returns a random duration in [0, n]; nil means rand.N. Tests
	// replace it to make the schedule deterministic.
	jitter func(n time.Duration) time.Duration
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
		delay += b.random(ceiling - b.Base)
	}
	if err != nil {
		if err.Class == ClassConfig {
			delay = max(delay, b.ConfigMin)
		}
		delay = max(delay, err.RetryAfter)
	}
	return delay
}

func (b Backoff) random(n time.Duration) time.Duration {
	if b.jitter != nil {
		return b.jitter(n)
	}
	return rand.N(n + 1)
}
