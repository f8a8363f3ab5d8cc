from __future__ import annotations

from core.secrets import MASK, redact, shown_setting


def test_redact_hides_the_password_of_every_url_kind() -> None:
    assert redact("redis://:s3cret@10.0.0.1:6379/0") == "redis://:***@10.0.0.1:6379/0"
    assert redact("postgresql://u:p%40ss@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("amqp://u:p@ss@h/") == "amqp://u:***@h/"  # an unescaped @ in the password
    assert redact("host=h password=pw dbname=x") == "host=h password=*** dbname=x"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact("redis://:pw@h:notaport/0") == "redis://:***@h:notaport/0"


def test_secret_settings_are_masked_and_urls_redacted() -> None:
    assert shown_setting("ALPHAPLUS_API_TOKEN", "abc") == MASK
    assert shown_setting("ALPHAPLUS_BINANCE_API_KEY", "k") == MASK
    assert shown_setting("ALPHAPLUS_API_TOKEN", "") == ""
    assert shown_setting("ALPHAPLUS_DATABASE_URL", "postgresql://a:b@h/d") == \
        "postgresql://a:***@h/d"
    assert shown_setting("ALPHAPLUS_CELERY_BROKER_URL", "redis://:x@h/1,redis://:y@g/1") == \
        "redis://:***@h/1,redis://:***@g/1"
    assert shown_setting("ALPHAPLUS_SYMBOLS", "BTCUSDT") == "BTCUSDT"
