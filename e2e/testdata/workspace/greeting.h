#ifndef SEALCACHE_E2E_GREETING_H_
#define SEALCACHE_E2E_GREETING_H_

#include <string>

// Greeting returns the line the hello binary prints.
std::string Greeting();

#endif  // SEALCACHE_E2E_GREETING_H_
