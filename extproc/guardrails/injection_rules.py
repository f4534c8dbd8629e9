"""The prompt injection rules, by family, in English and the common languages.

Each rule needs an instruction verb *and* its target ("ignore" + "previous
instructions", "reveal" + "system prompt"), which keeps benign text ("ignore the noise
in this data", "show me the instructions for the bookshelf") passing. Words are
separated by `_W`: spaces, and the hyphens or underscores of
`ignore-all-previous-instructions`. Matched case-insensitively, on the folded text
(fold.py) and on the original (Cyrillic letters fold to their Latin look-alikes).
tests/corpora/ holds the attacks and the benign texts they are measured on.
"""

from __future__ import annotations

_W = r"[\s_-]+"                     # between words
_TARGET = (r"(?:instructions?|prompts?|rules?|guidelines?|directives?|context|messages?|"
           rf"constraints?|polic(?:y|ies)|guardrails?|directions?|system{_W}prompt)")
_PRIOR = (r"(?:previous|prior|above|earlier|preceding|original|initial|existing|system|safety|developer)"
          r"(?:[\s_-]+(?:and|or)[\s_-]+(?:following|subsequent|later))?")
_SCOPE = rf"(?:(?:all|any|the|your|these|those|every|of|each|about){_W})*(?:{_PRIOR}{_W})?"
_OVERRIDE_VERB = r"(?:ignore|disregard|forget)"
# Verbs with many benign uses ("bypass the policy cache", "drop the rules table"): only
# with a scope that points at what came before, or at the model's own.
_WEAK_VERB = r"(?:override|bypass|skip|drop|discard|abandon|neglect|circumvent)"
_FOLLOW = (r"(?:follow(?:ing)?|obey(?:ing)?|listen(?:ing)?\s+to|adher(?:e|ing)\s+to|comply(?:ing)?\s+with|"
           r"heed(?:ing)?|respect(?:ing)?|stick(?:ing)?\s+to|abid(?:e|ing)\s+by)")
_TOLD = r"(?:told|given|instructed|taught|asked|programmed|said)"

ENGLISH = {
    "override": [
        rf"\b{_OVERRIDE_VERB}{_W}{_SCOPE}{_TARGET}",
        rf"\b{_WEAK_VERB}{_W}(?:(?:all|any|of|the|these|those|every){_W})*(?:{_PRIOR}|your(?:{_W}{_PRIOR})?){_W}{_TARGET}",
        rf"\b(?:do{_W}not|don'?t|stop|no{_W}longer|never|cease){_W}{_FOLLOW}{_W}"
        rf"(?:(?:any|all|of){_W})*(?:(?:the|these|those|my){_W}{_PRIOR}|your(?:{_W}{_PRIOR}|{_W}own)?){_W}{_TARGET}",
        rf"\b(?:ignore|disregard|forget){_W}(?:what(?:ever)?|everything|anything|all(?:{_W}that)?){_W}(?:that{_W})?"
        rf"(?:you(?:'ve|'d|{_W}have|{_W}were|{_W}had|{_W}got|{_W}was)?(?:{_W}been)?{_W}{_TOLD}"
        rf"|(?:was|were|has{_W}been|is){_W}(?:said|written|stated|told{_W}to{_W}you))\b",
        r"\bforget\s+(?:everything|all)\s+(?:you\s+(?:were|have\s+been)\s+told|above|before)",
        r"\b(?:new|updated)\s+instructions?\s*:",
        r"\bfrom\s+now\s+on,?\s+you\s+(?:will|must|are)\s+(?:ignore|no\s+longer|not\s+bound)",
        rf"\byour{_W}(?:previous|prior|original|old){_W}instructions{_W}(?:are|were){_W}(?:void|cancel+ed|revoked|obsolete|no{_W}longer)",
    ],
    "impersonation": [
        r"<\|im_start\|>\s*system|<\|system\|>|<\|start_header_id\|>\s*system|\[/?INST\]|<</?SYS>>",
        r"(?m:^\s*(?:#{1,4}\s*)?(?:system|developer)\s*(?:prompt|message)?\s*:\s*you\s+(?:are|must|will))",
        # A fake system turn: `### SYSTEM` (in capitals), or a heading line that is only that.
        r"(?m:(?-i:#{1,6}[ \t]*(?:SYSTEM|DEVELOPER)(?:[ \t]+(?:PROMPT|MESSAGE|OVERRIDE|INSTRUCTIONS?))?)[ \t]*:?[ \t]*$)",
        r"(?m:^[ \t]*#{1,6}[ \t]*(?:system|developer)[ \t]+(?:prompt|message|override|instructions?)[ \t]*:?[ \t]*$)",
        # ... or such a heading in capitals with an order after its colon: "### SYSTEM: new policy, ..."
        r"(?m:^[ \t]*(?-i:#{1,6}[ \t]*(?:SYSTEM|DEVELOPER)(?:[ \t]+(?:PROMPT|MESSAGE|OVERRIDE|INSTRUCTIONS?))?)"
        r"[ \t]*:[ \t]*(?:new|updated?|you|ignore|disregard|forget|answer|respond|reply|comply|override|"
        r"always|never|from[ \t]+now|the[ \t]+(?:assistant|model|ai))\b)",
        r"</\s*(?:user|human|assistant)\s*>\s*<\s*(?:system|developer)\s*>",
        r"<\s*(?:system|developer)\s*>\s*(?:you\s+(?:are|must|will)|ignore|new\s+instructions|from\s+now\s+on)",
        r"\byou\s+are\s+(?:now\s+)?(?:DAN|in\s+developer\s+mode|an?\s+unrestricted|jailbroken|free\s+of\s+all)",
        r"\b(?:act|behave|respond)\s+as\s+(?:if\s+you\s+(?:have|had)\s+no|an?\s+(?:AI|assistant|model)\s+(?:without|with\s+no))\s+(?:restrictions|rules|filters|limits)",
        r"\bdeveloper\s+mode\s+(?:enabled|activated|on)\b",
    ],
    "exfiltration": [
        r"\b(?:reveal|show|print|display|output|repeat|leak|tell\s+me|what\s+(?:is|are))\s+(?:me\s+)?"
        r"(?:your\s+(?:full\s+|entire\s+|hidden\s+|initial\s+|original\s+)?(?:system\s+prompt|system\s+message|"
        r"instructions|hidden\s+prompt|prompt)|the\s+(?:full\s+|entire\s+)?(?:system\s+prompt|system\s+message|"
        r"hidden\s+prompt|(?:hidden|initial|original)\s+(?:instructions|prompt))"
        # "the system message log" is not the model's: the phrase must end there
        r"(?:\s*(?:[.!?:,;'\"]|$)|\s+(?:verbatim|word|exactly|in\s+full|to\s+me|now|please|and|that|you)\b))",
        r"\b(?:copy|paste|include|put|insert|write|repeat|print|output|echo|dump|quote|reproduce|leak|send)\s+"
        r"(?:out\s+|back\s+|down\s+)?(?:the|your|this)\s+(?:full\s+|entire\s+|whole\s+|exact\s+|original\s+|initial\s+|hidden\s+)?"
        r"(?:system\s+(?:message|prompt|instructions?)|developer\s+(?:message|prompt)|initial\s+instructions|"
        r"hidden\s+instructions|instructions\s+you\s+were\s+given)",
        r"\brepeat\s+(?:the\s+|all\s+)?(?:text|words|everything)\s+above\b",
        r"\b(?:what|everything)\s+(?:was|were)\s+you\s+told\s+(?:before|above|initially)",
    ],
}

# The same families as attackers write them in French, Spanish, German, Chinese,
# Russian and Japanese: the instruction verb and its target, as in English.
OTHER_LANGUAGES = {
    "override": [
        # French: "ignore(z) toutes les instructions précédentes", "oublie tes consignes"
        r"\b(?:ignor|oubli|n[e']\s*tiens?\s+pas\s+compte\s+d)\w*\s+(?:de\s+|des\s+)?(?:toutes?\s+|tous\s+)?"
        r"(?:les|tes|vos|ces|mes)\s+(?:instructions|consignes|r[eè]gles|directives|ordres)",
        # Spanish: "ignora todas las instrucciones anteriores", "olvida tus reglas"
        r"\b(?:ignor|olvid|omit|descart|hac\w*\s+caso\s+omiso\s+de)\w*\s+(?:todas\s+|todos\s+)?(?:las|tus|sus|estas|los)\s+"
        r"(?:instrucciones|reglas|indicaciones|directrices|[oó]rdenes)",
        # German: "ignoriere alle vorherigen Anweisungen", "vergiss deine Regeln"
        r"\b(?:ignorier|vergiss|vergesst|vergessen|missacht|[uü]bergeh)\w*\s+(?:du\s+|sie\s+|bitte\s+)?"
        r"(?:alle\s+|s[aä]mtliche\s+)?(?:die\s+|deine\s+|ihre\s+|eure\s+)?"
        r"(?:(?:vorherigen|bisherigen|obigen|vorigen|fr[uü]heren|urspr[uü]nglichen|vorangegangenen)\s+)?"
        r"(?:anweisungen|instruktionen|regeln|vorgaben|befehle)",
        # Chinese: 忽略之前的所有指令, 忽略以上指示, 无视先前的规则
        r"(?:忽略|无视|忽视|忘记|忘掉|不要理会|不要遵循|不再遵循|不要遵守|無視|忽略掉)(?:你)?(?:之前|以前|先前|上面|上述|以上|前面|此前|"
        r"所有|全部|一切|原来|原有|原先)[的]?(?:所有|全部|一切)?[的]?(?:指令|指示|说明|規則|规则|提示|命令|要求|設定|设定)",
        # Russian: "игнорируй все предыдущие инструкции", "забудь свои правила"
        r"(?:игнорир|проигнорир|забуд|не\s+обращай\s+внимания\s+на|не\s+следуй|не\s+выполняй|отбрось|отмени)\w*\s+"
        r"(?:(?:все|всё|свои|твои|ваши|эти|данные)\s+)?(?:(?:предыдущие|прежние|предшествующие|вышеуказанные|"
        r"вышеизложенные|прошлые|изначальные|системные|ранее\s+данные)\s+)?(?:инструкци|указани|правил|команд|директив)",
        # Japanese: 以前の指示をすべて無視して, これまでの命令を忘れて
        r"(?:以前|前|これまで|上記|先|以上|今まで|最初|上)の(?:すべての|全ての|全)?(?:指示|命令|ルール|指令|プロンプト|設定)"
        r"(?:を|は)?(?:すべて|全て|全部)?(?:無視|忘れ)",
        r"(?:すべての|全ての)(?:指示|命令|ルール)を(?:無視|忘れ)",
    ],
    "exfiltration": [
        r"\b(?:r[eé]v[eè]l|affich|montr|donn|r[eé]p[eè]t|copi|imprim)\w*\s+(?:-?moi\s+)?(?:ton|ta|tes|votre|vos|le|la|les)\s+"
        r"(?:prompt|invite|message|instructions|consignes)\s+(?:syst[eè]me|initia\w*|d'origine|cach[eé]\w*)",
        r"\b(?:muestr|revel|repit|copi|dime|imprim|ens[eé][nñ]a)\w*\s+(?:me\s+)?(?:tu|el|las|tus|su|sus)\s+"
        r"(?:prompt|mensaje|instrucciones)\s+(?:del?\s+sistema|iniciales|originales|ocult\w+)",
        r"\b(?:zeig|gib|verrat|wiederhol|kopier|nenn)\w*\s+(?:mir\s+)?(?:deinen|den|deine|die|ihren|ihre)\s+"
        r"(?:system-?prompt|systemnachricht|system-?anweisungen|urspr[uü]nglichen\s+anweisungen|versteckten\s+anweisungen)",
        r"(?:显示|输出|告诉我|打印|泄露|重复|复制|给我看|展示)(?:一下)?(?:你的|出)?(?:系统提示|系统消息|系统指令|初始指令|系統提示)",
        r"(?:покажи|выведи|раскрой|повтори|скопируй|напиши)\w*\s+(?:мне\s+)?(?:свой\s+|твой\s+|свои\s+|твои\s+)?"
        r"(?:системн\w+\s+(?:промпт|запрос|сообщение|инструкци\w*)|исходн\w+\s+инструкци\w*|скрыт\w+\s+инструкци\w*)",
        r"システム(?:プロンプト|メッセージ|指示)を(?:表示|出力|教え|見せ|繰り返|コピー|書き出)",
    ],
}


def all_rules() -> dict[str, list[str]]:
    return {family: ENGLISH.get(family, []) + OTHER_LANGUAGES.get(family, [])
            for family in ("override", "impersonation", "exfiltration")}
