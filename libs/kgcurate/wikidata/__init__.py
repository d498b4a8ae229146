"""Wikidata: dump records -> ``entities`` rows (pure parsers) and their Spark wiring elsewhere.

Both dump formats (JSON ``latest-all.json*`` and truthy N-Triples ``latest-truthy.nt*``) give the
same row for the same entity: ``json_entity`` and ``ntriples`` share the field rules below.
"""

from __future__ import annotations

from kgcurate.errors import UserError

# Properties the entities table keeps, by column.
P_INSTANCE_OF = "P31"
P_SUBCLASS_OF = "P279"
P_PARENT_TAXON = "P171"
P_IMAGE = "P18"
P_TAXON_NAME = "P225"
P_COMMON_NAME = "P1843"

ITEM_PROPS = {P_INSTANCE_OF: "instance_of", P_SUBCLASS_OF: "subclass_of", P_PARENT_TAXON: "parent_taxon"}
KEPT_PROPS = (P_INSTANCE_OF, P_SUBCLASS_OF, P_PARENT_TAXON, P_IMAGE, P_TAXON_NAME, P_COMMON_NAME)

# Wikidata's language-neutral code: a label in "mul" applies to every language lacking its own.
MUL = "mul"

ENTITY_FIELDS = (
    "qid", "label", "description", "aliases", "common_names", "taxon_name", "sitelinks",
    "instance_of", "subclass_of", "parent_taxon", "has_image",
)


# The RDF dumps tag literals with BCP 47, the JSON dumps key them by MediaWiki's own codes. Wikibase's RDF
# writer (RdfVocabulary::getCanonicalLanguageCode) first looks a code up in its canonicalLanguageCodes setting
# (repo/config/Wikibase.default.php: crh -> crh-Latn, cbk-zam -> cbk-x-zam, nrm -> fr-x-nrm, roa-tara ->
# it-x-tara, simple -> en-simple or, in older releases, en-x-simple, ...), then falls back to MediaWiki's
# LanguageCode::bcp47 (NON_STANDARD_LANGUAGE_CODE_MAPPING). These are the codes where the two differ beyond
# letter case, both tables inverted, BCP 47 side lower-cased.
_BCP47_TO_WIKIMEDIA = {
    "cbk": "cbk-zam", "de-x-formal": "de-formal", "en-x-rtl": "en-rtl", "es-x-formal": "es-formal",
    "hu-x-formal": "hu-formal", "jv-x-bms": "map-bms", "ro-cyrl-md": "mo", "nrf": "nrm",
    "nl-x-informal": "nl-informal", "nap-x-tara": "roa-tara", "en-simple": "simple", "sr-cyrl": "sr-ec",
    "sr-latn": "sr-el", "crh-latn-ro": "crh-ro", "kk-arab-cn": "kk-cn", "kk-latn-tr": "kk-tr",
    "zh-hans-cn": "zh-cn", "zh-hans-sg": "zh-sg", "zh-hans-my": "zh-my", "zh-hant-tw": "zh-tw",
    "zh-hant-hk": "zh-hk", "zh-hant-mo": "zh-mo",
    # Wikibase's canonicalLanguageCodes, where MediaWiki alone would write another tag
    "cbk-x-zam": "cbk-zam", "fr-x-nrm": "nrm", "it-x-tara": "roa-tara", "en-x-simple": "simple",
}
# Only for RDF tags, where two Wikibase codes get one tag, so the tag cannot tell them apart: crh-Latn is written
# for crh (canonicalLanguageCodes) and for crh-latn (bcp47); egl for eml (bcp47: eml is the retired code of
# Emiliano-Romagnolo) and for egl (Emilian, a term language of its own). The code of most such terms is taken;
# in a config each code stays itself (egl is Emilian, not eml's labels).
_RDF_ONLY = {"crh-latn": "crh", "egl": "eml"}


def wikimedia_language(code: str) -> str:
    """A language code as the JSON dump writes it (lower case, MediaWiki's codes): "en-GB" is "en-gb",
    the RDF dump's "zh-Hans-CN" is "zh-cn", so both dump formats and any configured spelling agree."""
    lower = code.strip().lower()
    return _BCP47_TO_WIKIMEDIA.get(lower, lower)


def rdf_language(tag: str) -> str:
    """An RDF dump's language tag as the JSON dump writes the code: :func:`wikimedia_language`, and the
    ambiguous crh-Latn and egl read as crh and eml."""
    lower = tag.strip().lower()
    return _RDF_ONLY.get(lower) or wikimedia_language(lower)


def language_order(languages: list[str] | tuple[str, ...] | str | None) -> tuple[str, ...]:
    """Configured languages in priority order (as :func:`wikimedia_language` spells them), ``mul``
    appended last as the fallback."""
    if languages is None:
        languages = ["en"]
    if isinstance(languages, str):
        languages = [x.strip() for x in languages.split(",")]
    for lang in languages:
        if not isinstance(lang, str):  # YAML reads an unquoted no (Norwegian), yes, on, off as booleans
            raise UserError(f"wikidata.languages: {lang!r} is not a language code: quote codes YAML reads as "
                            "other values, e.g. ['no', en]")
    spelled = (wikimedia_language(lang) for lang in languages if lang)
    out = [lang for lang in dict.fromkeys(spelled) if lang and lang != MUL]
    if not out:
        raise UserError("no language configured (wikidata.languages must name at least one, e.g. en)")
    return (*out, MUL)


# The entities.sitelinks column is an int (tables.py): a count beyond it is a bad record, not a crash.
MAX_SITELINKS = 2**31 - 1


def is_ascii_digits(text: str) -> bool:
    """Only 0-9: ``str.isdigit`` also accepts ``"²"`` and other Unicode digits ``int`` rejects."""
    return text.isascii() and text.isdigit()


def is_item_id(qid: str) -> bool:
    """Q followed by ASCII digits: only items go to ``entities`` (not properties P.., lexemes L..)."""
    return len(qid) > 1 and qid[0] == "Q" and is_ascii_digits(qid[1:])


def is_utf8(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (Arrow strings): a lone surrogate, which an escape
    like ``\\ud800`` decodes to, cannot."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
