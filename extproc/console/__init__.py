"""The console: pages in a browser for the people who hand out keys and watch spend
(keys, teams and budgets, spend, recent calls, the running config), served by the
supervisor on a listener of its own. Server-rendered from the same store the CLI and
the admin API read; its templates and stylesheet ship in the wheel. Imports config,
store and yamltree only: never the pipeline, stages, runtime or transport (the
supervisor hands it what it needs of the runtime)."""
