# Shortcuts for the two commands in the README.

.PHONY: deps demo test

deps:
	bash e2e/install-deps.sh

demo:
	bash e2e/demo.sh

test:
	bash e2e/test.sh
