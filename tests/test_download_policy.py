"""Opt-out parsing and retry rules (kgcurate.download.policy): pure, no server."""

from __future__ import annotations

import datetime

import pytest

from kgcurate import cli, config, settings
from kgcurate.download import status as st
from kgcurate.download.fetch import DEFAULT_USER_AGENT
from kgcurate.download.policy import (
    IMG2DATASET_OPT_OUT,
    OptOut,
    RetryPolicy,
    defaults_left_out,
    retry_after_seconds,
    user_agent_problem,
    user_agent_tokens,
)
from kgcurate.stages import download


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], None),
        (["noai"], "noai"),
        (["NoImageAI"], "noimageai"),
        (["index, follow"], None),
        (["noindex, noai"], "noai"),
        (["otherbot: noai"], None),  # another bot's rule is not ours
        (["otherbot: noindex, noai"], None),  # the prefix covers every directive after it in the value
        (["otherbot: noindex", "noimageai"], "noimageai"),  # a second header value starts without a bot
        (["kgcurate: noai"], "noai"),
        (["KGCurate: NOAI"], "noai"),
        (["otherbot: noindex, kgcurate: noai"], "noai"),
        (["unavailable_after: 2030-01-01, noai"], "noai"),  # a valued directive is not a bot name
        # an RFC 850 date holds a comma: "21 Oct 2015 07" is the date's rest, not a bot named so
        (["unavailable_after: Wed, 21 Oct 2015 07:28:00 GMT, noai"], "noai"),
        (["otherbot: unavailable_after: Wed, 21 Oct 2015 07:28:00 GMT, noai"], None),
        (["max-image-preview: none"], None),
        (["noindex", "noimageindex"], None),  # search-engine directives are not ours by default
    ],
)
def test_opt_out_default(values, expected):
    assert OptOut().check(values) == expected


def test_opt_out_img2dataset_directives_and_own_token():
    strict = OptOut(directives=IMG2DATASET_OPT_OUT)
    assert strict.check(["noindex"]) == "noindex"
    assert strict.check(["googlebot: noindex"]) is None
    assert strict.check(["nofollow, NOIMAGEINDEX"]) == "noimageindex"
    mine = OptOut(user_agent_tokens=("MyBot",))
    assert mine.check(["mybot: noai"]) == "noai"
    assert mine.check(["kgcurate: noai"]) is None


@pytest.mark.parametrize(("user_agent", "tokens"), [
    (None, ("kgcurate",)),
    (DEFAULT_USER_AGENT, ("kgcurate",)),
    ("kgcurate/0.1 (+https://github.com/kgcurate)", ("kgcurate",)),
    ("AcmeResearch/1.0 (+https://acme.example)", ("kgcurate", "acmeresearch")),
    ("acme-bot", ("kgcurate", "acme-bot")),
    ("Mozilla/5.0 (compatible; AcmeBot/2.1; +https://acme.example/bot)", ("kgcurate", "acmebot")),
    ("(+https://acme.example)", ("kgcurate",)),
])
def test_a_custom_user_agent_is_addressed_by_its_product_token(user_agent, tokens):
    assert user_agent_tokens(user_agent) == tokens
    ours = OptOut(user_agent_tokens=user_agent_tokens(user_agent))
    assert ours.check([f"{tokens[-1]}: noai"]) == "noai"  # the name the site sees
    assert ours.check(["kgcurate: noimageai"]) == "noimageai"  # and still the software's own name
    assert ours.check(["otherbot: noai"]) is None


@pytest.mark.parametrize(
    ("status", "http_status", "retry"),
    [
        (st.TIMEOUT, None, True),
        (st.HTTP_ERROR, 429, True),
        (st.HTTP_ERROR, 500, True),
        (st.HTTP_ERROR, 503, True),
        (st.HTTP_ERROR, 404, False),
        (st.HTTP_ERROR, 403, False),
        (st.HTTP_ERROR, 400, False),
        (st.DECODE_ERROR, 200, False),
        (st.CONNECTION_ERROR, None, False),
        (st.REFUSED_ADDRESS, None, False),
        (st.TOO_LARGE, 200, False),
        (st.OPTED_OUT, 200, False),
        (st.SUCCESS, 200, False),
    ],
)
def test_retryable(status, http_status, retry):
    assert RetryPolicy.retryable(status, http_status) is retry


def test_delay_backoff_is_deterministic_jittered_and_capped():
    policy = RetryPolicy(base_delay=1.0, max_delay=30.0, jitter=0.5)
    url = "https://example.org/a.jpg"
    delays = [policy.delay(url, attempt) for attempt in range(1, 5)]
    assert delays == [RetryPolicy(base_delay=1.0, max_delay=30.0).delay(url, a) for a in range(1, 5)]
    for attempt, delay in enumerate(delays, start=1):
        assert 2 ** (attempt - 1) <= delay < 2 ** (attempt - 1) * 1.5
    assert policy.delay(url, 10) == 30.0  # 512 s of backoff, capped
    others = {policy.delay(f"https://example.org/{i}.jpg", 1) for i in range(20)}
    assert len(others) > 10  # the jitter differs per URL, so a batch of failures does not retry in lockstep
    assert RetryPolicy(jitter=0.0).delay(url, 3) == 4.0


def test_retry_after_seconds_honoured_and_capped():
    policy = RetryPolicy(base_delay=1.0, max_delay=30.0)
    assert policy.delay("u", 1, "7") == 7.0
    assert policy.delay("u", 1, " 0 ") == 0.0
    assert policy.delay("u", 1, "30") == 30.0
    # longer than we wait in a run: no retry now (asking before the server's time would not honour it)
    assert policy.delay("u", 1, "1000") is None and policy.delay("u", 1, "1e400") is None
    backoff = policy.delay("u", 2)
    assert policy.delay("u", 2, "-5") == backoff
    assert policy.delay("u", 2, "nan") == backoff
    assert policy.delay("u", 2, "soon") == backoff


def test_retry_after_as_an_http_date_counts_from_the_servers_date():
    """The HTTP-date form was ignored: a server asking for an hour got two more requests within ~4 s."""
    policy = RetryPolicy(base_delay=1.0, max_delay=30.0)
    sent = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert policy.delay("u", 1, "Wed, 21 Oct 2015 07:28:20 GMT", sent) == 20.0
    assert policy.delay("u", 1, "Wed, 21 Oct 2015 08:28:00 GMT", sent) is None  # an hour: not in this run
    assert policy.delay("u", 1, "Wed, 21 Oct 2015 07:27:00 GMT", sent) == 0.0  # already past
    # without a Date header: our clock (a date in 2015 is past, one far ahead is longer than we wait)
    assert policy.delay("u", 1, "Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert policy.delay("u", 1, "Fri, 31 Dec 9999 23:59:59 GMT") is None
    now = datetime.datetime(2015, 10, 21, 7, 28, tzinfo=datetime.timezone.utc)
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:05 GMT", None, now) == 5.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:05 GMT", "not a date", now) == 5.0  # a bad Date: ours


def test_retry_policy_rejects_nonsense():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(base_delay=-1)


def test_an_opt_out_list_without_the_defaults_is_warned_about(tmp_path, caplog) -> None:
    """--opt-out replaces the list: `--opt-out noindex,noimageindex` (meant as an addition) drops noai."""
    assert defaults_left_out(["noai", "noimageai"]) == defaults_left_out(IMG2DATASET_OPT_OUT) == ()
    assert defaults_left_out(["NoAI", "noindex"]) == ("noimageai",)
    assert defaults_left_out([]) == ("noai", "noimageai")
    help_text = settings.meta(settings.DownloadOptions, "opt_out")["help"]
    assert "replaces the list" in help_text and "noai,noimageai,noindex,noimageindex" in help_text

    def prepared(*flags: str) -> list[str]:
        args = cli.build_parser("download").parse_args(["download", "--out", str(tmp_path / "o"), *flags])
        cfg = config.load(None)
        settings.apply_flags(args, cfg, settings.flag_keys(("download",)))
        caplog.clear()
        with caplog.at_level("WARNING", logger="kgcurate.download"):
            download.prepare(args, cfg)
        return [r.getMessage() for r in caplog.records]

    assert prepared() == prepared("--opt-out", "noai,noimageai,noindex,noimageindex") == []
    [line] = prepared("--opt-out", "noindex,noimageindex")
    assert line == ("download: --opt-out noindex,noimageindex leaves out noai, noimageai: images whose X-Robots-Tag "
                    "says noai or noimageai are downloaded; pass --opt-out noai,noimageai,noindex,noimageindex to "
                    "honour them too")


@pytest.mark.parametrize(("user_agent", "problem"), [
    (DEFAULT_USER_AGENT, None),
    ("AcmeResearch/1.0 (+https://acme.example; contact: Zoë)", None),  # Latin-1: http.client sends it
    ("AcmeBot/1.0\tx", None),
    ("AcmeBot/1.0\r\nX-Evil: 1", "control character '\\r'"),
    ("AcmeBot/1.0\n", "control character '\\n'"),
    ("AcmeBot\x00", "control character '\\x00'"),
    ("研究Bot/1.0", "character '研' outside Latin-1"),
])
def test_a_user_agent_no_request_can_carry_is_named(user_agent, problem) -> None:
    found = user_agent_problem(user_agent)
    assert found is None if problem is None else problem in found
