"""studychat: the backend of online studies in which participants chat with a GPT model.

The package map (docs/architecture.md draws it):

- `factory`: `create_app(config)`, the Flask app factory;
- `settings`: every setting, named once; `exceptions`; `logging_setup`; `outage_watch`;
  `gc_tuning`, the garbage collector of web and worker;
- `web`: routes, request and response schemas, errors, request hooks, admin pages;
- `chat`: the chat domain without Flask: queue, job, model client, answers and streams,
  budgets;
- `worker`: the concurrent RQ worker, its job timeouts and recovery, its `main`;
- `store`: MongoDB records and chat transcripts;
- `export`: the researcher's export command.

Importing the package loads nothing else, so that gunicorn's master can read
`logging_setup` without Flask and the worker never loads the web.
"""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
STATIC_DIR = PACKAGE_DIR / "static"
