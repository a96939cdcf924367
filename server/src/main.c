/*
 * main.c - lossd's entry point; everything else is in the server library.
 */
#include "lossd/srv.h"

int main(int argc, char **argv)
{
	return srv_main(argc, argv);
}
