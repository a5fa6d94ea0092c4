#include <dsv4.h>
#include <stdio.h>
int main(void) {
  if (dsv4_version_number() != DSV4_VERSION_NUMBER) return 1;
  printf("consumer_c: dsv4 %s\n", dsv4_version());
  return 0;
}
