"""English or Chinese for summaries and fixes: `--lang`, or the locale when not given."""
import locale
import os

LANGS = ("en", "zh")


def default_lang(env=None) -> str:
    """'zh' when the locale says Chinese (LC_ALL / LC_MESSAGES / LANG, then the OS locale), else 'en'."""
    env = os.environ if env is None else env
    for var in ("FOMM_DOCTOR_LANG", "LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        value = env.get(var)
        if value:
            return _lang_of(value)
    try:
        name = locale.getlocale()[0] or ""
    except ValueError:
        name = ""
    return _lang_of(name)


def _lang_of(name: str) -> str:
    name = name.lower()
    return "zh" if name.startswith("zh") or "chinese" in name else "en"


def tr(lang: str, en: str, zh: str) -> str:
    """Pick the sentence for `lang`; both are written side by side where they are used."""
    return zh if lang == "zh" else en
