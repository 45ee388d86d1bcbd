"""Pure, trio-free scheduling decisions. Nothing in this package imports trio or httpx;
every time-dependent decision takes ``now`` as an argument."""
