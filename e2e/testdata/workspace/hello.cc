#include <iostream>

#include "e2e/testdata/workspace/greeting.h"

int main() {
  std::cout << Greeting() << std::endl;
  return 0;
}
