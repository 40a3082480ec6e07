"""``worker.config``: per-channel settings, their precedence and their validation."""

from __future__ import annotations

from typing import Any

import pytest

from worker.config import ChannelConfig, channel_configs, worker_setting
from worker.constants import DEFAULT_CONCURRENCY, DEFAULT_MAX_ATTEMPTS
from worker.errors import ConfigurationError

NO_FLAGS: dict[str, Any] = {"concurrency": None, "prefetch": None, "delivery": None}


def test_built_in_defaults_apply_without_settings_or_flags() -> None:
    configs = channel_configs(["jobs"], NO_FLAGS, None)
    assert configs == {"jobs": ChannelConfig()}
    assert configs["jobs"].concurrency == DEFAULT_CONCURRENCY
    assert configs["jobs"].prefetch_limit == DEFAULT_CONCURRENCY
    assert configs["jobs"].delivery == "at-least-once"
    assert configs["jobs"].leased
    assert configs["jobs"].max_attempts == DEFAULT_MAX_ATTEMPTS


def test_prefetch_defaults_to_the_concurrency() -> None:
    assert ChannelConfig(concurrency=4).prefetch_limit == 4
    assert ChannelConfig(concurrency=4, prefetch=1).prefetch_limit == 1


def test_worker_wide_settings_override_built_in_defaults() -> None:
    configs = channel_configs(["jobs", "mail"], NO_FLAGS, {"CONCURRENCY": 20, "PREFETCH": 5})
    assert configs["jobs"] == configs["mail"] == ChannelConfig(concurrency=20, prefetch=5)


def test_flags_override_worker_wide_settings() -> None:
    configs = channel_configs(
        ["jobs"], {**NO_FLAGS, "concurrency": 3}, {"CONCURRENCY": 20, "PREFETCH": 5}
    )
    assert configs["jobs"] == ChannelConfig(concurrency=3, prefetch=5)


def test_flags_left_unset_do_not_override_settings() -> None:
    configs = channel_configs(["jobs"], NO_FLAGS, {"CONCURRENCY": 20})
    assert configs["jobs"].concurrency == 20


def test_a_channels_own_settings_override_flags() -> None:
    settings = {
        "CONCURRENCY": 20,
        "CHANNELS": {"jobs": {"concurrency": 1, "prefetch": 2}},
    }
    configs = channel_configs(["jobs", "mail"], {**NO_FLAGS, "concurrency": 3}, settings)
    assert configs["jobs"] == ChannelConfig(concurrency=1, prefetch=2)
    # A channel without its own entry keeps the flag, which beats the worker-wide setting.
    assert configs["mail"] == ChannelConfig(concurrency=3)


def test_a_channels_own_settings_override_worker_wide_settings() -> None:
    settings = {"PREFETCH": 9, "CHANNELS": {"mail": {"prefetch": 1}}}
    configs = channel_configs(["jobs", "mail"], NO_FLAGS, settings)
    assert configs["jobs"].prefetch == 9
    assert configs["mail"].prefetch == 1


def test_settings_for_channels_not_consumed_are_ignored() -> None:
    settings = {"CHANNELS": {"elsewhere": {"concurrency": 2}}}
    assert channel_configs(["jobs"], NO_FLAGS, settings) == {"jobs": ChannelConfig()}


def test_boolean_concurrency_is_rejected_rather_than_read_as_one() -> None:
    with pytest.raises(ConfigurationError, match=r"concurrency for channel 'jobs' is True"):
        channel_configs(["jobs"], {**NO_FLAGS, "concurrency": True}, None)


def test_unknown_worker_wide_option_is_rejected_by_name() -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"CHANNEL_WORKER has unknown key\(s\) 'CONCURENCY', 'WORKERS'; known keys: "
        r"'CHANNELS', .*'CONCURRENCY', .*'PREFETCH'",
    ):
        channel_configs(["jobs"], NO_FLAGS, {"CONCURENCY": 2, "WORKERS": 3})


def test_unknown_per_channel_option_is_rejected_naming_the_channel() -> None:
    settings = {"CHANNELS": {"jobs": {"concurrency": 2, "retries": 3}}}
    with pytest.raises(
        ConfigurationError,
        match=r"CHANNEL_WORKER\['CHANNELS'\]\['jobs'\] has unknown option\(s\) 'retries'",
    ):
        channel_configs(["jobs"], NO_FLAGS, settings)


def test_unknown_flag_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match=r"command line has unknown option\(s\) 'speed'"):
        channel_configs(["jobs"], {"speed": 11}, None)


def test_channels_setting_must_be_a_dict() -> None:
    with pytest.raises(
        ConfigurationError, match=r"CHANNEL_WORKER\['CHANNELS'\] is \['jobs'\]; expected a dict"
    ):
        channel_configs(["jobs"], NO_FLAGS, {"CHANNELS": ["jobs"]})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, r"concurrency for channel 'jobs' is 0; expected an integer >= 1\."),
        ({"concurrency": -3}, r"concurrency for channel 'jobs' is -3; expected an integer >= 1"),
        ({"concurrency": "4"}, r"concurrency for channel 'jobs' is '4'; expected an integer"),
        ({"concurrency": 2.5}, r"concurrency for channel 'jobs' is 2\.5; expected an integer"),
        ({"prefetch": 0}, r"prefetch for channel 'jobs' is 0; expected an integer >= 1\."),
        ({"prefetch": "many"}, r"prefetch for channel 'jobs' is 'many'; expected an integer"),
        (
            {"delivery": "exactly-once"},
            r"delivery for channel 'jobs' is 'exactly-once'; expected one of 'at-least-once', "
            r"'at-most-once'\.",
        ),
        ({"max_attempts": 0}, r"max_attempts for channel 'jobs' is 0; expected an integer >= 1"),
        ({"max_message_bytes": "1M"}, r"max_message_bytes for channel 'jobs' is '1M'"),
        ({"lease_s": 0}, r"lease_s for channel 'jobs' is 0; expected a number > 0"),
        ({"message_timeout_s": -1}, r"message_timeout_s for channel 'jobs' is -1; expected a"),
        ({"retry_backoff_min_s": "1s"}, r"retry_backoff_min_s for channel 'jobs' is '1s'"),
    ],
)
def test_invalid_values_are_rejected_naming_channel_and_value(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        channel_configs(["jobs"], NO_FLAGS, {"CHANNELS": {"jobs": options}})


def test_message_timeout_may_be_turned_off() -> None:
    settings = {"CHANNELS": {"jobs": {"message_timeout_s": None}}}
    assert channel_configs(["jobs"], NO_FLAGS, settings)["jobs"].message_timeout_s is None


def test_at_most_once_holds_no_leases() -> None:
    configs = channel_configs(["jobs"], {**NO_FLAGS, "delivery": "at-most-once"}, None)
    assert configs["jobs"].delivery == "at-most-once"
    assert not configs["jobs"].leased


def test_worker_wide_only_settings_are_not_channel_options() -> None:
    settings = {"DEAD_LETTER_MAX_COUNT": 50, "EXPIRY_WARNING_S": 60, "CONCURRENCY": 2}
    assert channel_configs(["jobs"], NO_FLAGS, settings)["jobs"] == ChannelConfig(concurrency=2)
    assert worker_setting(settings, "DEAD_LETTER_MAX_COUNT", 10) == 50
    assert worker_setting(settings, "DEAD_LETTER_MAX_AGE_S", 10) == 10


def test_invalid_worker_wide_only_setting_is_rejected() -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"CHANNEL_WORKER\['EXPIRY_WARNING_S'\] is 'soon'; expected a number > 0 \(warn",
    ):
        worker_setting({"EXPIRY_WARNING_S": "soon"}, "EXPIRY_WARNING_S", 600)


def test_invalid_flag_value_is_rejected_for_every_channel_it_applies_to() -> None:
    with pytest.raises(ConfigurationError, match=r"concurrency for channel 'jobs' is 0"):
        channel_configs(["jobs"], {**NO_FLAGS, "concurrency": 0}, None)


def test_invalid_worker_wide_value_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match=r"prefetch for channel 'jobs' is -1"):
        channel_configs(["jobs"], NO_FLAGS, {"PREFETCH": -1})


def test_a_valid_per_channel_value_fixes_an_invalid_worker_wide_one() -> None:
    # Only the resolved value is checked, so a channel's own entry can repair it.
    settings = {"CONCURRENCY": 0, "CHANNELS": {"jobs": {"concurrency": 2}}}
    assert channel_configs(["jobs"], NO_FLAGS, settings)["jobs"].concurrency == 2


def test_configuration_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        ChannelConfig(concurrency=0).validated("jobs")
