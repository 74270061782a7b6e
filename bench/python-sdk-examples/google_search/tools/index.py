INDEX = [
    ("Dify", "https://dify.ai", "Dify is an open-source platform for LLM apps."),
    ("Dify plugins", "https://docs.dify.ai/plugins", "Plugins extend Dify with tools, endpoints and models."),
    ("Rust", "https://www.rust-lang.org", "A language empowering everyone to build reliable software."),
]


def search(query, num):
    words = [w.lower() for w in query.split()]
    found = [e for e in INDEX if any(w in (e[0] + " " + e[2]).lower() for w in words)]
    return found[:num]
