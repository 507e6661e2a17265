"""The data behind task detection: cue phrases, code tokens and their weights.

Kept apart from :mod:`orin_console.core.engine.tasks` (the engine) so the rules read as a table.
Every entry is a *family* of evidence, never a single prompt: a cue phrase in the instruction
(the first and last few hundred characters of a prompt), a syntax token in the code window
(the first 640 and last 192 characters), or the shape of the text. Each entry carries the
words the operator sees in the explanation ("code: fenced block, `def`, mentions Python").

Weights are points added to a task's score; chat starts at :data:`CHAT_BASELINE` so that a
prompt with no evidence is chat. ``docs/selection.md`` explains the scale.
"""

from __future__ import annotations

from typing import Final

#: Chat's starting score: the default when nothing else speaks.
CHAT_BASELINE: Final = 1.0

# --- Cue phrases (matched lower-cased, as whole words, in the instruction window) -----------
#
# phrase -> (task, weight, reason). Spelling variants are listed explicitly so that one dict
# lookup maps a match to its entry.

_STRONG = 2.5
_MEDIUM = 1.2
_WEAK = 0.6


def _cues(task: str, weight: float, reason: str, *phrases: str) -> dict[str, tuple[str, float, str]]:
    return {phrase: (task, weight, reason) for phrase in phrases}


CUES: Final[dict[str, tuple[str, float, str]]] = {
    # summarisation
    **_cues("summarisation", _STRONG, "asks for a summary",
            "summarise", "summarize", "summarised", "summarized", "summary", "summaries",
            "summarising", "summarizing", "sum up", "sum it up", "recap", "synopsis",
            "condense", "boil this down", "boil it down", "executive summary"),
    **_cues("summarisation", _STRONG, "TL;DR", "tl;dr", "tldr", "tl dr"),
    **_cues("summarisation", _STRONG, "asks for the gist or key points",
            "gist", "key points", "main points", "key takeaways", "main takeaways", "takeaways",
            "main ideas", "in a nutshell", "short version"),
    **_cues("summarisation", _MEDIUM, "asks for something shorter",
            "shorten", "shorter", "brief overview", "overview of", "in brief", "briefly",
            "brief summary", "concise", "study notes", "abstract"),
    **_cues("summarisation", _MEDIUM, "asks for a set length",
            *(f"in {n} {unit}" for n in ("one", "two", "three", "four", "five", "a few", "1",
                                         "2", "3", "4", "5", "a")
              for unit in ("sentence", "sentences", "line", "lines", "words", "bullet points",
                           "bullets", "paragraph", "paragraphs"))),
    **_cues("summarisation", _STRONG, "asks for a summary (fr/de/es)",
            "résume", "résumez", "resume en", "resumen", "zusammenfassen",
            "zusammenfassung", "fasse"),
    # extraction
    **_cues("extraction", _STRONG, "asks to extract",
            "extract", "extracts", "extraction", "pull out", "pull the", "grab the", "pick out",
            "extrae", "extrais", "extraire", "extrahiere", "extrahieren"),
    **_cues("extraction", _STRONG, "asks for named entities", "named entities", "entities"),
    **_cues("extraction", _STRONG, "asks to find every occurrence",
            "find all", "find every", "list all", "list every", "list the", "get all",
            "get me all", "give me all", "give me every", "all of the"),
    **_cues("extraction", _MEDIUM, "asks to parse a text into fields",
            "parse this", "parse the", "into fields", "key-value", "structured data",
            "fields", "field"),
    **_cues("extraction", _MEDIUM, "wants structured output (JSON, CSV, table)",
            "json object", "as json", "into json", "in json", "as csv", "as a table",
            "as a list", "list of"),
    **_cues("extraction", _MEDIUM, "refers to things mentioned in the text",
            "mentioned", "appear in", "appears in", "that appear"),
    **_cues("extraction", _WEAK, "asks to identify items", "identify the", "which lines"),
    # classification
    **_cues("classification", _STRONG, "asks to classify",
            "classify", "classification", "classifier", "categorize", "categorise",
            "categorization", "categorisation", "which category", "what category",
            "into one of", "triage", "label the", "label each", "label this", "tag this", "tag each", "assign a",
            "classe", "clasifica", "klassifiziere", "kategorisiere"),
    **_cues("classification", _STRONG, "asks for sentiment",
            "sentiment", "positive or negative", "positive, negative", "positive/negative",
            "negative or positive", "positif ou négatif", "positiv oder negativ",
            "positivo o negativo", "thumbs up"),
    **_cues("classification", _STRONG, "spam or not", "spam or not", "spam or not spam",
            "spam o no spam", "legit or a scam", "phishing"),
    **_cues("classification", _MEDIUM, "offers labels to choose from",
            "one of:", "one of these", "options:", "pick one", "choose one", "which one:",
            "which one fits", "answer with only", "answer with the category", "only pos",
            "categories", "the categories", "label", "labels"),
    **_cues("classification", _MEDIUM, "asks yes or no about the text",
            "yes or no", "yes/no", "true or false", "or an opinion"),
    **_cues("classification", _MEDIUM, "asks which kind it is",
            "which genre", "what kind of message", "what type of",
            "the emotion", "the tone", "the intent", "is this a", "is the following", "determine whether",
            "determine if",
            "decide whether", "decide if", "tell me whether", "tell me if",
            "detect the", "identify whether", "rate the"),
    # completion
    **_cues("completion", 3.0, "asks to continue the text",
            "continue this story", "continue the story", "continue the following",
            "continue this text", "continue the text", "continue writing", "please continue",
            "keep going", "carry on writing", "complete the sentence", "complete this sentence",
            "complete this list", "finish this paragraph", "finish the sentence",
            "finish this sentence", "finish this story", "autocomplete", "suite du texte", "continúa"),
    **_cues("completion", 1.5, "story opening", "once upon a time"),
    # chat: questions, advice, conversation, creative writing, language help
    **_cues("chat", 0.8, "a question about a concept",
            "what is", "what's", "what are", "what was", "why do", "why does", "why is",
            "why did", "how does", "how do", "how is", "explain", "the difference between",
            "difference between", "pros and cons", "is it worth", "is it true",
            "is it better", "should i", "when should", "conceptually", "in plain english",
            "in simple terms", "like i'm", "who", "where"),
    **_cues("chat", 0.8, "asks for advice or ideas",
            "any tips", "tips", "advice", "recommend", "suggest", "ideas", "help me",
            "how can i", "how should i", "what should i", "what would"),
    **_cues("chat", 0.8, "creative writing",
            "poem", "haiku", "limerick", "story about", "bedtime story", "toast",
            "joke", "lyrics", "pretend", "act as", "describe", "draft a"),
    **_cues("chat", 0.8, "language help",
            "translate", "proofread", "rewrite this sentence", "more formal", "grammar"),
}

# --- Code: syntax (whitespace-separated tokens, case-sensitive, in the code window) ----------
#
# token -> (weight, reason). Only tokens that are rare as words in prose; several distinct
# tokens add up and the total is capped by SYNTAX_CAP.

def _tokens(weight: float, reason: str, *tokens: str) -> dict[str, tuple[float, str]]:
    return {token: (weight, reason) for token in tokens}


SYNTAX_TOKENS: Final[dict[str, tuple[float, str]]] = {
    **_tokens(1.0, "`def`", "def"), **_tokens(1.0, "`elif`", "elif", "elif:"),
    **_tokens(0.8, "Python keywords", "lambda", "self.", "except", "except:", "try:",
              "else:", "__name__", "__init__", "async", "await", "None:", "True:", "False:"),
    **_tokens(0.4, "`import`", "import"),
    **_tokens(0.3, "`return`", "return"),
    **_tokens(1.0, "`#include`", "#include"),
    **_tokens(0.8, "C-family keywords", "int", "void", "char", "struct", "typedef", "static",
              "public", "private", "const", "unsigned", "size_t", "null",
              "nullptr", "namespace", "template"),
    **_tokens(1.0, "Rust keywords", "fn", "impl", "mut", "pub", "println!"),
    **_tokens(1.0, "Go keywords", "func", "chan", "defer", "nil"),
    **_tokens(0.8, "JavaScript keywords", "var", "function", "export", "=>", "===", "!=="),
    **_tokens(0.8, "SQL keywords", "SELECT", "FROM", "WHERE", "JOIN", "GROUP", "ORDER",
              "INSERT", "UPDATE", "DELETE", "CREATE", "ALTER", "HAVING"),
    **_tokens(0.8, "shell syntax", "sudo", "|", "&&", "||", "2>&1", ">>", "$", "fi",
              "esac", "#!/bin/bash", "#!/bin/sh", "#!/usr/bin/env"),
    **_tokens(0.8, "operators", "==", "!=", ":=", "->", "+=", "-=", "=", "<-", "::", "<=", ">="),
    **_tokens(0.8, "braces", "{", "}", "};", "});", "})", "{}", "()", "):", ");"),
    **_tokens(0.8, "Dockerfile", "RUN", "CMD", "WORKDIR", "COPY", "ENTRYPOINT"),
    **_tokens(1.0, "a traceback", "Traceback"),
}
#: Points per syntax family; a family counts once however many of its tokens occur.
SYNTAX_CAP: Final = 5.0
#: Syntax points from which the prompt counts as *containing code*.
CODE_PRESENT: Final = 2.0
FENCE_WEIGHT: Final = 3.0
#: (substring, weight, reason, minimum count): the shape of code lines, counted in C.
SHAPES: Final = (
    ("\n    ", 0.6, "indented lines", 2),
    ("\t", 0.6, "indented lines", 2),
    (";\n", 0.8, "statements ending in `;`", 2),
    ("{\n", 0.8, "blocks in braces", 1),
    (":\n    ", 0.8, "a block opener (`:` then indent)", 1),
)
#: Each further distinct token of the same family adds this share of the family's weight.
FAMILY_EXTRA: Final = 0.5
#: A family gives at most this multiple of its weight.
FAMILY_MAX: Final = 2.0

# --- Code: languages and tools named in the instruction --------------------------------------

LANGUAGES: Final[dict[str, str]] = {
    name: label
    for label, names in {
        "Python": ("python", "numpy", "pandas", "django", "flask", "pytest"),
        "JavaScript": ("javascript", "js", "node", "node.js", "nodejs", "react", "vue",
                       "express.js", "npm"),
        "TypeScript": ("typescript", "ts"),
        "Java": ("java", "spring", "kotlin"),
        "C/C++": ("c++", "c", "cpp", "cuda", "gcc"),
        "C#": ("c#", "dotnet"),
        "Rust": ("rust", "cargo"),
        "Go": ("golang", "go"),
        "SQL": ("sql", "postgres", "postgresql", "mysql", "sqlite"),
        "shell": ("bash", "shell", "powershell", "awk", "sed", "zsh", "one-liner", "cron"),
        "HTML/CSS": ("html", "css"),
        "Swift": ("swift",), "PHP": ("php",), "Ruby": ("ruby",), "Haskell": ("haskell",),
        "Lua": ("lua",), "R": ("r",), "Scala": ("scala",),
        "a regex": ("regex", "regular expression"),
        "infrastructure code": ("dockerfile", "docker", "kubernetes", "yaml", "systemd",
                                "makefile", "github actions", "git"),
    }.items()
    for name in names
}
LANGUAGE_WEIGHT: Final = 0.5

# Code artefacts a request can ask for ("write a function", "give me the git commands").
CODE_OBJECTS: Final = (
    "function", "functions", "method", "class", "script", "program", "query", "queries",
    "regex", "regular expression", "snippet", "one-liner", "unit tests", "unit test", "tests",
    "dockerfile", "makefile", "workflow", "endpoint", "component", "algorithm", "decorator",
    "kernel", "migration", "struct", "interface", "module", "middleware", "controller",
    "command", "commands", "loop", "generator", "code", "view", "server", "app", "api",
    "data class", "dataclass", "type guard", "type hints", "unit file", "deployment",
    "tokenizer", "heap", "trie", "cache", "rate limiter",
    "linked list", "hash map", "binary tree", "parser",
    "funktion", "fonction", "consulta",
)
CODE_VERBS: Final = (
    "write", "implement", "create", "generate", "build", "give me", "show me", "show the",
    "add", "complete", "make", "code", "port", "convert", "refactor", "rewrite", "optimise",
    "optimize", "fix", "debug", "review", "schreibe", "écris", "escribe",
)
CODE_REQUEST_WEIGHT: Final = 2.5
# "this Python", "my code", "the following function": the prompt holds the code it is about.
CODE_DEICTIC: Final = ("this", "these", "my", "the following", "here's my", "here is my")
CODE_DEICTIC_WEIGHT: Final = 1.2
#: "mentions a function": a code word with no request around it.
OBJECT_MENTION_WEIGHT: Final = 0.3
#: "is this X or Y", "label: A, B or C": a choice between labels about the given text.
CHOICE_WEIGHT: Final = 1.2

# Debugging and code-changing cues: strong when the prompt holds code, weak otherwise.
CODE_ACTIONS: Final[dict[str, str]] = {
    **dict.fromkeys(("fix", "bug", "debug", "crash", "crashes", "deadlock", "segfault",
                     "off-by-one", "stack trace", "traceback", "compile", "throws",
                     "exception", "error", "what's wrong", "wrong with", "doesn't work",
                     "won't compile"), "asks to debug"),
    **dict.fromkeys(("refactor", "port this", "convert this", "make this", "idiomatic",
                     "add type hints", "add error handling", "review my", "optimise this",
                     "optimize this", "speed it up", "restructure", "line by line",
                     "what does this", "what this", "does this code"), "asks to change or read code"),
}
CODE_ACTION_WEIGHT: Final = (0.7, 1.8)  # (no code in the prompt, code in the prompt)

# Words that, at the very end of a prompt with no final punctuation, leave a sentence open.
OPEN_ENDINGS: Final = frozenset((
    "and", "or", "but", "the", "a", "an", "to", "of", "who", "which", "that", "with",
    "in", "on", "for", "because", "then", "is", "was", "are", "were", "my", "his", "her",
    "their", "our", "be", "as", "like", "when", "while", "et", "und", "y",
))
OPEN_ENDING_WEIGHT: Final = 1.5
# A short prompt that is one plain question ("Is Rust harder to learn than Go?") leans to chat.
QUESTION_WORDS: Final = frozenset((
    "what", "what's", "whats", "why", "how", "when", "where", "who", "which", "is", "are",
    "do", "does", "did", "can", "could", "should", "would", "will", "was", "were",
))
QUESTION_WEIGHT: Final = 0.5
#: A prompt longer than this with a paragraph break carries a passage to work on.
PASSAGE_CHARS: Final = 350
#: Multiplier on summarisation, extraction and classification cues when a passage is present.
PASSAGE_BOOST: Final = 1.3
#: A passage on its own hints at work on it.
PASSAGE_HINT: Final[dict[str, float]] = {"summarisation": 0.3, "extraction": 0.2}
#: A passage introduced by a colon or in quotes counts from this many characters.
PAYLOAD_CHARS: Final = 120
#: Multiplier on chat's question cues when the prompt holds code or a passage: a question
#: about a given text is about that text.
CHAT_ON_MATERIAL: Final = 0.5
