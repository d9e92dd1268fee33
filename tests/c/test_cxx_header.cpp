// dbr.h must compile as C++ (extern "C", no C-only constructs) and link.
#include "dbr.h"

#include <cstdio>

int main()
{
    dbr_stat st = dbr_stat();
    dbr_file *file = nullptr;
    int rc = dbr_file_open("/nonexistent/dbr", &file);
    std::printf("test_cxx_header: %s (%s), size field %zu bytes\n", dbr_strerror(rc),
                dbr_version_string(), sizeof st.size);
    return (rc == DBR_E_NOT_FOUND && file == nullptr &&
            dbr_version_number() == DBR_VERSION_NUMBER) ? 0 : 1;
}
