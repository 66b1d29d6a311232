#include "e2e/testdata/workspace/greeting.h"

#include "e2e/testdata/workspace/greeting_text.h"

std::string Greeting() { return GREETING_TEXT; }
