"""Fleet helpers without Ray: the restart backoff over months of failures, error lines for logs."""
import itertools

from segpost.fleet import short_error
from segpost.io.sources import backoff_delay, backoff_delays


def test_the_backoff_doubles_to_its_limit_and_never_overflows():
    assert list(itertools.islice(backoff_delays(0.5, 4.0), 6)) == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff_delay(1, 0.5, 4.0) == 0.5 and backoff_delay(3, 0.5, 4.0) == 2.0
    assert backoff_delay(5000, 0.5, 60.0) == 60.0     # a group failing every minute for months


def test_an_error_without_text_still_makes_a_line():
    assert short_error(RuntimeError()) == "RuntimeError: "
    assert short_error(ValueError("first\nsecond")) == "ValueError: first"
    assert len(short_error(OSError("x" * 1000))) == 300
