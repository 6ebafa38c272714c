/* checkstack test input: data and no function (tests/checkstack.c). */
int cs_nofunc_data[4] = { 1, 2, 3, 4 };
